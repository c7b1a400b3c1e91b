"""Attention maps: their values against an independent recomputation, the model left as it was, the PNG,
and `python -m gpt.sample --attention-png` end to end on a tiny trained checkpoint."""
import math
from pathlib import Path

import numpy as np
import pytest

import gpt.sample
from gpt import GPT, GPTConfig
from gpt.attention_maps import attention_maps, plot_attention_maps, token_labels
from gpt.train import TrainConfig, Trainer
from nanograd import Tensor, no_grad

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def model():
    return GPT(GPTConfig(block_size=12, vocab_size=20, n_layer=2, n_head=3, n_embd=24), seed=3)


def _prompt(T, seed=0):
    return np.random.default_rng(seed).integers(0, 20, (1, T))


def test_maps_are_causal_softmax_rows(model):
    maps = attention_maps(model, _prompt(9))
    assert maps.shape == (2, 3, 9, 9)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(maps >= 0)
    assert np.all(maps[..., np.triu(np.ones((9, 9), dtype=bool), k=1)] == 0)  # nothing from later positions
    assert maps[..., 0, 0] == pytest.approx(1.0)  # the first token can only look at itself


def test_layer0_equals_softmax_qk_recomputed(model):
    idx = _prompt(10, seed=1)
    maps = attention_maps(model, idx)
    block, C, nh = model.transformer.h[0], model.config.n_embd, model.config.n_head
    hs = C // nh
    x = model.transformer.wte.weight.data[idx[0]] + model.transformer.wpe.weight.data[:10]  # (T, C)
    with no_grad():
        qkv = block.attn.c_attn(block.ln_1(Tensor(x[None]))).data[0].astype(np.float64)  # (T, 3C)
    q, k = qkv[:, :C].reshape(10, nh, hs), qkv[:, C:2 * C].reshape(10, nh, hs)
    scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(hs)
    scores[:, np.triu(np.ones((10, 10), dtype=bool), k=1)] = -np.inf
    expected = np.exp(scores - scores.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(maps[0], expected, rtol=1e-4, atol=1e-6)


def test_model_is_left_as_it_was_even_on_error(model):
    model.train()
    attention_maps(model, _prompt(5))
    assert model.training and all(block.attn.fused for block in model.transformer.h)
    assert all(block.attn.att is None for block in model.transformer.h)
    model.transformer.h[1].attn.c_attn = None  # the forward fails in layer 1, after layer 0 went unfused
    with pytest.raises(TypeError):
        attention_maps(model, _prompt(5))
    assert all(block.attn.fused for block in model.transformer.h) and model.training


def test_long_prompt_is_cropped_to_block_size(model):
    idx = _prompt(30)
    maps = attention_maps(model, idx)
    assert maps.shape == (2, 3, 12, 12)
    np.testing.assert_array_equal(maps, attention_maps(model, idx[:, -12:]))


def test_png_is_written(model, tmp_path):
    maps = attention_maps(model, _prompt(7))
    labels = ["a", " ", "\n", "$", "$x$", "\\", "é"]
    plot_attention_maps(maps, labels, tmp_path / "a.png", title="tiny")
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="labels"):
        plot_attention_maps(maps, labels[:3], tmp_path / "b.png")
    with pytest.raises(OSError, match="cannot write"):
        plot_attention_maps(maps, labels, tmp_path / "missing" / "a.png")


def test_token_labels_make_whitespace_visible():
    class Chars:
        def decode(self, ids):
            return "".join([" ", "\n", "ab", "$", "\\", "\x07", ""][i] for i in ids)

    assert token_labels(Chars(), range(7)) == ["·", "\\n", "ab", r"\$", "\\\\", "\\x07", "∅"]

    class Bytes(Chars):
        def decode_bytes(self, ids):
            return bytes([0xC3])  # half of 'é'

    assert token_labels(Bytes(), [0]) == ["\\xc3"]


def test_sample_cli_writes_the_png_then_samples(tmp_path, capsys):
    rng = np.random.default_rng(0)
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(rng.choice(["thou", "art", "ROMEO:", "soft", "\n"], 500)), encoding="utf-8")
    config = TrainConfig(out_dir=str(tmp_path / "out"), data=str(text), cache_dir=str(tmp_path / "cache"),
                         n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=2, max_iters=2, warmup_iters=1,
                         eval_interval=2, eval_iters=1, sample_tokens=0, progress=False)
    Trainer(config).train()
    capsys.readouterr()  # the trainer's progress lines
    ckpt, png = Path(config.out_dir) / "ckpt", tmp_path / "a.png"
    gpt.sample.main(["--ckpt", str(ckpt), "--prompt", "ROMEO: art thou soft", "--attention-png", str(png),
                     "--max-new-tokens", "5", "--seed", "0"])
    out, err = capsys.readouterr()
    assert png.read_bytes()[:8] == PNG_MAGIC and f"wrote {png}" in err
    assert out.startswith("ROMEO: art thou soft") and len(out) == len("ROMEO: art thou soft") + 5 + 1
    with pytest.raises(SystemExit, match="^error: cannot write"):
        gpt.sample.main(["--ckpt", str(ckpt), "--prompt", "art", "--attention-png",
                         str(tmp_path / "missing" / "a.png"), "--max-new-tokens", "1"])
