"""nanograd.draw: the SVG pictures of the computation graph parse, and show what they claim to show."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gpt import GPT, GPTConfig
from nanograd import Tensor, draw, trace

SVG = "{http://www.w3.org/2000/svg}"


def parse(path):
    """(root element, node rects, all text lines) of an SVG file; fails if it is not well-formed XML."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "node"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    return root, rects, texts


def inside_view_box(root, rects):
    _, _, width, height = map(float, root.get("viewBox").split())
    return all(0 <= float(r.get("x")) and float(r.get("x")) + float(r.get("width")) <= width
               and 0 <= float(r.get("y")) and float(r.get("y")) + float(r.get("height")) <= height for r in rects)


def small_graph():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    w = Tensor(np.array([0.5, 0.25]), requires_grad=True)
    b = Tensor(np.array(0.1), requires_grad=True)
    return x, w, b, (x * w + b).tanh().sum()


def tiny_gpt_loss():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
    idx = np.random.default_rng(0).integers(0, 11, (2, 8))
    return model, model(idx, idx)[1]


def test_small_graph_shows_ops_names_values_and_gradients(tmp_path):
    x, w, b, loss = small_graph()
    g = trace(loss)
    loss.backward()
    z = x.data * w.data + b.data
    path = g.draw(tmp_path / "g.svg", names={x: "x", w: "w", id(b): "b <bias> & co", loss: "L"})
    root, rects, texts = parse(path)
    assert len(rects) == len(g.nodes) == 7  # x, w, b, *, +, tanh, sum
    assert {"x", "w", "b <bias> & co", "L", "= sum", "*", "+", "tanh"} <= set(texts)
    assert "data [1, -2]" in texts and "data 0.1" in texts
    dx = (1 - np.tanh(z) ** 2) * w.data
    assert f"grad [{dx[0]:.4g}, {dx[1]:.4g}]" in texts
    assert f"grad {(1 - np.tanh(z) ** 2).sum():.4g}" in texts
    assert "grad [1, 1]" in texts  # the interior node tanh kept its gradient through backward
    assert len(root.findall(f"{SVG}path")) == len(g.edges) == 6
    assert inside_view_box(root, rects)


def test_draw_before_backward_shows_values_only_and_leaves_the_graph_usable(tmp_path):
    x, w, b, loss = small_graph()
    _, rects, texts = parse(draw(loss, tmp_path / "g.svg"))
    assert len(rects) == 7
    assert any(t.startswith("data") for t in texts) and not any(t.startswith("grad") for t in texts)
    loss.backward()
    assert x.grad is not None


def test_trace_after_backward_says_to_trace_first():
    *_, loss = small_graph()
    loss.backward()
    with pytest.raises(RuntimeError, match="before backward"):
        trace(loss)


def test_a_tensor_without_grad_is_one_box(tmp_path):
    root, rects, texts = parse(draw(Tensor(np.arange(3.0)), tmp_path / "c.svg"))
    assert len(rects) == 1 and not root.findall(f"{SVG}path")
    assert "const" in texts and "data [0, 1, 2]" in texts


def test_scalar_constants_join_their_op_unless_collapse_is_off(tmp_path):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    g = trace((x * 2.0).sum())
    _, rects, texts = parse(g.draw(tmp_path / "a.svg"))
    assert len(rects) == 3 and "* 2" in texts
    _, rects, texts = parse(g.draw(tmp_path / "b.svg", collapse=False))
    assert len(rects) == 4 and "const" in texts


def test_one_layer_gpt_loss(tmp_path):
    model, loss = tiny_gpt_loss()
    g = trace(loss)
    loss.backward()
    root, rects, texts = parse(g.draw(tmp_path / "gpt.svg", names=model.named_parameters()))
    ops = {t.op for t in g.nodes}
    assert {"attention", "cross_entropy", "layer_norm", "linear", "gelu", "embedding"} <= ops
    assert {"attention", "cross_entropy", "layer_norm", "gelu"} <= set(texts)
    assert "transformer.h.0.attn." in texts and "c_attn.weight" in texts  # long names wrap at a dot
    # Chains of shape ops become one small box each: reshape·transpose·unbind into heads, one unbind piece each
    # for q, k and v (the chain branches there), and transpose·reshape putting the heads back together.
    shape_ops = sum(t.op in ("reshape", "transpose", "unbind") for t in g.nodes)
    assert shape_ops == 8 and len(rects) == len(g.nodes) - 8 + 5
    assert "reshape·transpose·" in texts and "unbind" in texts and "transpose·reshape" in texts
    assert inside_view_box(root, rects)
    _, rects, _ = parse(g.draw(tmp_path / "full.svg", collapse=False))
    assert len(rects) == len(g.nodes)


def test_max_depth_keeps_the_nodes_near_the_root(tmp_path):
    _, loss = tiny_gpt_loss()
    g = trace(loss, max_depth=2)
    assert [t.op for t in g.nodes[:2]] == ["cross_entropy", "linear"]
    root, rects, _ = parse(g.draw(tmp_path / "cut.svg"))
    assert len(rects) == len(g.nodes) < 10
    assert any(r.get("stroke-dasharray") for r in rects)
