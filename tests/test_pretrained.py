"""Loading and saving GPT-2 folders in the Hugging Face layout (gpt.storage.gpt2_folders).

No weights can be downloaded here, so each test builds a tiny GPT-2 folder itself: random weights under
GPT-2's key names and storage conventions (Conv1D weights as (in, out)), a GPT-2 style tokenizer, and a
config.json. The reference logits are computed from those arrays by a plain NumPy GPT-2 written below,
independently of nanograd and gpt.model.
"""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import gpt
from gpt.model import GPT, GPTConfig
from gpt.storage.gpt2_folders import PretrainedError, load_pretrained, save_pretrained
from tokenizer import GPT2_SPLIT_PATTERN, BPETokenizer, CharTokenizer
from tokenizer.interop import write_gpt2_files

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS = 2, 2, 16, 24
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 4


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return BPETokenizer(pattern=GPT2_SPLIT_PATTERN).train(TEXT, vocab_size=280)


def hf_weights(vocab_size, seed=0, prefix="transformer.", mask_buffers=False):
    """Random GPT-2 weights {HF key: float32 array}. The scale (0.3) is far above GPT-2's 0.02 so that
    attention, GELU and LayerNorm all work in their non-linear range and a wrong mapping shows."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(0.0, 0.3, shape).astype(np.float32)

    C = N_EMBD
    w = {"wte.weight": normal(vocab_size, C), "wpe.weight": normal(N_POSITIONS, C)}
    for i in range(N_LAYER):
        p = f"h.{i}."
        w |= {p + "ln_1.weight": 1 + normal(C), p + "ln_1.bias": normal(C),
              p + "attn.c_attn.weight": normal(C, 3 * C), p + "attn.c_attn.bias": normal(3 * C),
              p + "attn.c_proj.weight": normal(C, C), p + "attn.c_proj.bias": normal(C),
              p + "ln_2.weight": 1 + normal(C), p + "ln_2.bias": normal(C),
              p + "mlp.c_fc.weight": normal(C, 4 * C), p + "mlp.c_fc.bias": normal(4 * C),
              p + "mlp.c_proj.weight": normal(4 * C, C), p + "mlp.c_proj.bias": normal(C)}
        if mask_buffers:  # as in OpenAI's converted release: constants, not weights
            w[p + "attn.bias"] = np.tril(np.ones((N_POSITIONS, N_POSITIONS), np.float32))[None, None]
            w[p + "attn.masked_bias"] = np.array(-1e4, np.float32)
    w |= {"ln_f.weight": 1 + normal(C), "ln_f.bias": normal(C)}
    return {prefix + k: v for k, v in w.items()}


def write_folder(folder, weights, tok, vocab_size, **config_overrides):
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": vocab_size,
              "n_positions": N_POSITIONS, "n_ctx": N_POSITIONS, "n_embd": N_EMBD, "n_layer": N_LAYER,
              "n_head": N_HEAD, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, **config_overrides}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_gpt2_files(tok, folder / "vocab.json", folder / "merges.txt")
    return folder


@pytest.fixture
def folder(tmp_path, gpt2_tokenizer):
    vocab = gpt2_tokenizer.vocab_size
    return write_folder(tmp_path / "tiny-gpt2", hf_weights(vocab), gpt2_tokenizer, vocab)


def numpy_gpt2_logits(w, ids):
    """GPT-2's forward pass in float64 NumPy from HF-layout arrays w (no prefix): ids (T,) -> (T, vocab)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def layer_norm(x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w[name + ".weight"] + w[name + ".bias"]

    def conv1d(x, name):  # GPT-2's Conv1D: x @ W + b with W stored (in, out)
        return x @ w[name + ".weight"] + w[name + ".bias"]

    T, hs = len(ids), N_EMBD // N_HEAD
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]
    for i in range(N_LAYER):
        p = f"h.{i}."
        q, k, v = np.split(conv1d(layer_norm(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        q, k, v = (a.reshape(T, N_HEAD, hs).transpose(1, 0, 2) for a in (q, k, v))  # (n_head, T, hs)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hs)
        scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(1, 0, 2).reshape(T, N_EMBD)
        x = x + conv1d(y, p + "attn.c_proj")
        h = conv1d(layer_norm(x, p + "ln_2"), p + "mlp.c_fc")
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))  # gelu_new
        x = x + conv1d(h, p + "mlp.c_proj")
    return layer_norm(x, "ln_f") @ w["wte.weight"].T


def our_logits(model, ids):
    return model(np.asarray([ids]))[0].data[0]


# float32 logits of a 2-layer model vs a float64 reference: the differences are float32 rounding of
# O(1) values through ~10 dependent ops, about 1e-6; 1e-4 leaves a wide margin and still catches any
# mistake in the mapping (a transposed or swapped weight moves logits by O(1)).
ATOL = 1e-4


@pytest.mark.parametrize("prefix, mask_buffers", [("transformer.", False), ("", True)])
def test_loaded_logits_match_an_independent_numpy_gpt2(tmp_path, gpt2_tokenizer, prefix, mask_buffers):
    vocab = gpt2_tokenizer.vocab_size
    weights = hf_weights(vocab, prefix=prefix, mask_buffers=mask_buffers)
    if not prefix:  # OpenAI's converted files also store the tied head
        weights["lm_head.weight"] = weights["wte.weight"]
    model, tok = load_pretrained(write_folder(tmp_path / "m", weights, gpt2_tokenizer, vocab))
    ids = tok.encode("Whether 'tis nobler in the mind")
    assert tok.decode(ids) == "Whether 'tis nobler in the mind"
    assert not model.training
    plain = {k.removeprefix("transformer."): v for k, v in weights.items()}
    np.testing.assert_allclose(our_logits(model, ids), numpy_gpt2_logits(plain, ids), atol=ATOL, rtol=0)


def test_logits_match_transformers_gpt2(folder, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ids = list(range(3, 3 + N_POSITIONS))
    ours, _ = load_pretrained(folder)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        expected = theirs(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(our_logits(ours, ids), expected, atol=ATOL, rtol=0)
    # And the other way: a folder we write opens in transformers with the same logits.
    save_pretrained(ours, tmp_path / "resaved")
    reopened = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "resaved")).eval()
    with torch.no_grad():
        np.testing.assert_allclose(reopened(torch.tensor([ids])).logits[0].numpy(), expected, atol=ATOL, rtol=0)


def test_save_then_load_gives_identical_logits(tmp_path, gpt2_tokenizer):
    model = GPT(GPTConfig(block_size=16, vocab_size=gpt2_tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16),
                seed=3).eval()
    ids = gpt2_tokenizer.encode("that is the question")
    save_pretrained(model, tmp_path / "out", gpt2_tokenizer)
    save_pretrained(model, tmp_path / "out", gpt2_tokenizer)  # replacing an existing folder works too
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "vocab.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
    loaded, tok = load_pretrained(tmp_path / "out")
    assert tok.encode("that is the question") == ids
    assert np.array_equal(our_logits(loaded, ids), our_logits(model, ids))
    stored = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "lm_head.weight" not in stored  # tied, as transformers writes it
    assert stored["transformer.h.0.mlp.c_fc.weight"].shape == (16, 64)  # Conv1D (in, out)


def test_a_char_tokenizer_round_trips_as_tokenizer_model(tmp_path):
    tok = CharTokenizer().train(TEXT)
    model = GPT(GPTConfig(block_size=8, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=8), seed=1)
    save_pretrained(model, tmp_path / "char", tok)
    _, loaded = load_pretrained(tmp_path / "char")
    assert type(loaded) is CharTokenizer and loaded.encode("or not") == tok.encode("or not")


def _drop(folder, name):
    weights = load_file(str(folder / "model.safetensors"))
    del weights[name]
    save_file(weights, str(folder / "model.safetensors"))


def test_missing_and_unexpected_weights_are_named(folder):
    _drop(folder, "transformer.h.1.mlp.c_fc.bias")
    with pytest.raises(PretrainedError, match=r"missing \['h.1.mlp.c_fc.bias'\]"):
        load_pretrained(folder)
    weights = load_file(str(folder / "model.safetensors"))
    weights["transformer.h.1.mlp.c_fc.bias"] = np.zeros(4 * N_EMBD, np.float32)
    weights["transformer.h.2.ln_1.weight"] = np.ones(N_EMBD, np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(PretrainedError, match=r"unexpected \['transformer.h.2.ln_1.weight'\]"):
        load_pretrained(folder)


def test_wrong_shape_is_named(folder):
    weights = load_file(str(folder / "model.safetensors"))
    weights["transformer.h.0.attn.c_attn.weight"] = weights["transformer.h.0.attn.c_attn.weight"].T.copy()
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(PretrainedError, match=r"h.0.attn.c_attn.weight has shape \(48, 16\), expected \(16, 48\)"):
        load_pretrained(folder)


def test_untied_head_is_refused(folder):
    weights = load_file(str(folder / "model.safetensors"))
    weights["lm_head.weight"] = weights["transformer.wte.weight"] + 1
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(PretrainedError, match="lm_head.weight differs from wte.weight"):
        load_pretrained(folder)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "merges.txt"])
def test_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_pretrained(folder)


@pytest.mark.parametrize("override, message", [
    ({"activation_function": "relu"}, "activation_function = 'relu' is not supported"),
    ({"n_head": 3}, "not divisible by n_head"),
    ({"model_type": "gpt_neo"}, "only 'gpt2'"),
])
def test_unsupported_config_is_named(tmp_path, gpt2_tokenizer, override, message):
    vocab = gpt2_tokenizer.vocab_size
    folder = write_folder(tmp_path / "m", hf_weights(vocab), gpt2_tokenizer, vocab, **override)
    with pytest.raises(PretrainedError, match=message):
        load_pretrained(folder)


def test_a_model_without_biases_cannot_be_saved(tmp_path):
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=1, n_embd=8, bias=False))
    with pytest.raises(PretrainedError, match="bias=False"):
        save_pretrained(model, tmp_path / "nobias")
    assert not (tmp_path / "nobias").exists()


@pytest.mark.parametrize("parts, message", [(dict(recipe="modern"), "untied"),
                                             (dict(positions="rotary"), "positions='rotary'"),
                                             (dict(recipe="modern", tie_weights=True, bias=True), "norm='rms'")])
def test_a_model_of_other_parts_than_gpt2s_cannot_be_saved_as_gpt2(tmp_path, parts, message):
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8, **parts))
    with pytest.raises(PretrainedError, match=message):
        save_pretrained(model, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_the_public_face_and_sample_command_open_a_pretrained_folder(folder, tmp_path, capsys):
    model, tok = gpt.load_pretrained(folder)
    gpt.save_pretrained(model, tmp_path / "again", tok)
    again, _ = gpt.load_pretrained(tmp_path / "again")
    ids = [1, 2, 3]
    assert np.array_equal(our_logits(model, ids), our_logits(again, ids))

    from gpt import sample
    sample.main(["--pretrained", str(folder), "--prompt", "to be", "--max-new-tokens", "5", "--seed", "0"])
    out, err = capsys.readouterr()
    assert out.startswith("to be") and "tokens/s" in err
