"""Every file format we read, fed damaged and adversarial versions of itself (hypothesis): each load succeeds or
fails with our own error naming the file, never hangs, never allocates much more than the file's size, and
never runs code (nothing here unpickles).

Formats: checkpoint folders (manifest.json, config.json, state.json, model/state.safetensors,
tokenizer.model, with the manifest forged to match), Hugging Face GPT-2 folders (config.json,
model.safetensors, vocab.json + merges.txt), the tokenizer .model format, tiktoken rank files, and
safetensors headers on their own.
"""
import base64
import dataclasses
import json
import re
import shutil
import struct
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import tokenizer
from gpt.storage.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from gpt.model import GPT, GPTConfig
from gpt.storage.gpt2_folders import PretrainedError, load_pretrained, save_pretrained
from gpt.storage.safetensors_header import SafetensorsFileError, check_safetensors
from gpt import load_model
from tokenizer import BPETokenizer, CharTokenizer, GPT2_SPLIT_PATTERN
from tokenizer.interop import write_tiktoken

REPO = Path(__file__).resolve().parent.parent
CONFIG = GPTConfig(block_size=8, vocab_size=6, n_layer=1, n_head=1, n_embd=4)
# Memory a load may take beyond the file's own size: the interpreter's and hypothesis's bookkeeping, the
# tiny model, copies of a few-kilobyte file. A forged config asking for a real model (n_embd 10**5: 40 GB)
# is far above it; the legitimate loads of these files measured well under it.
SLACK_BYTES = 4 << 20


def _workspace():
    """Fresh valid files of every format, in a new temporary folder (hypothesis runs many examples)."""
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    model = GPT(CONFIG, seed=0)
    char = CharTokenizer().train("abcde\n")
    char.save(root / "char")
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    optimizer.step()
    save_checkpoint(root / "ckpt", Checkpoint(model=model.state_dict(), config=dataclasses.asdict(CONFIG), step=1,
                                              optimizer=optimizer.state_dict(), rng={"numpy": {"state": 1}},
                                              extra={"last_eval": [1, 2.0, 2.0]}), root / "char.model")
    bpe = BPETokenizer(pattern=GPT2_SPLIT_PATTERN).train("the cat sat on the mat with the hat " * 20, vocab_size=270)
    bpe.save(root / "bpe")
    write_tiktoken(bpe, root / "ranks.tiktoken")
    hf_model = GPT(dataclasses.replace(CONFIG, vocab_size=270), seed=0)
    save_pretrained(hf_model, root / "hf", bpe)
    return root


def _expect_clear_failure(load, path, errors=(ValueError, RuntimeError, OSError)):
    """Run `load`: it succeeds, or raises one of `errors` (ours derive from ValueError or RuntimeError) whose
    message names `path`; and it never allocates far more than the files under `path` hold. Returns the error."""
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() \
        else Path(path).stat().st_size
    tracemalloc.start()
    error = None
    try:
        load()
    except errors as e:
        assert str(path) in str(e), f"{type(e).__name__} does not name {path}: {e}"
        assert not isinstance(e, (KeyError, IndexError, TypeError, AttributeError)), repr(e)
        error = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * size + SLACK_BYTES, f"loading {size:,} bytes took {peak:,} bytes"
    return error


# --- how files are damaged or forged -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
adversarial_numbers = st.sampled_from([0, -1, 10**5, 10**9, 2**63, 2**64 + 1, 10**40, True, 1.5, "8", None, [8]])


@st.composite
def damaged(draw, original: bytes, kind: str):
    """A damaged or forged version of `original`, a file of `kind` ("json", "safetensors" or "text")."""
    choices = ["truncate", "flip", "insert", "garbage"]
    choices += {"json": ["json", "nested", "field"], "safetensors": ["header", "length"], "text": ["line"]}[kind]
    how = draw(st.sampled_from(choices))
    if how == "truncate":
        return original[: draw(st.integers(0, max(len(original) - 1, 0)))]
    if how == "flip":
        i = draw(st.integers(0, len(original) - 1))
        return original[:i] + bytes([original[i] ^ draw(st.integers(1, 255))]) + original[i + 1:]
    if how == "insert":
        i = draw(st.integers(0, len(original)))
        return original[:i] + draw(st.binary(min_size=1, max_size=16)) + original[i:]
    if how == "garbage":  # includes bytes that are not UTF-8
        return draw(st.binary(max_size=64))
    if how == "json":
        return json.dumps(draw(json_values)).encode()
    if how == "nested":  # deeper than any parser's recursion limit
        depth = draw(st.sampled_from([1_000, 100_000]))
        return b"[" * depth + b"]" * depth
    if how == "field":  # the original object with one value replaced by an absurd one
        obj = json.loads(original)
        if isinstance(obj, dict) and obj:
            obj[draw(st.sampled_from(sorted(obj)))] = draw(adversarial_numbers | json_values)
        return json.dumps(obj).encode()
    if how == "line":  # a line of the text replaced by an absurd one
        lines = original.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.sampled_from([b"", b"merges 99999999999", b"chars 10000000", b"special_tokens 7",
                                         b"pattern [[[[[[[[[[", b"bytes 1 2 3", b"0 0", b"\xff\xfe", b"255 255"]))
        return b"\n".join(lines)
    header_length = struct.unpack("<Q", original[:8])[0]
    header = json.loads(original[8:8 + header_length])
    data = original[8 + header_length:]
    if how == "length":  # a header length that claims terabytes, or cuts the JSON
        n = draw(st.sampled_from([2**40, 2**64 - 1, len(original), header_length - 1, 0]))
        return struct.pack("<Q", n) + original[8:]
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    header[name][field] = draw({
        "dtype": st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "X99", 7]),
        "shape": st.lists(st.integers(-2, 2**62), max_size=4) | adversarial_numbers,
        "data_offsets": st.lists(st.integers(-1, 2**63), min_size=0, max_size=3) | adversarial_numbers,
    }[field])
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _kind(name):
    return "safetensors" if name.endswith(".safetensors") else "json" if name.endswith(".json") else "text"


def _forge_manifest(folder):
    """Rewrite the manifest so its digests match the damaged files: the attacker controls every file."""
    import hashlib

    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                             for name in manifest["files"]}
    except (ValueError, KeyError, TypeError, OSError, RecursionError):
        return  # the manifest itself is the damaged file
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


# --- the properties -----------------------------------------------------------------------------------------

CHECKPOINT_FILES = ["manifest.json", "config.json", "state.json", "model.safetensors", "state.safetensors",
                    "tokenizer.model"]


@given(st.data(), st.sampled_from(CHECKPOINT_FILES), st.booleans())
def test_a_damaged_or_forged_checkpoint_loads_or_is_refused_naming_it(data, name, forge):
    root = _workspace()
    try:
        folder = root / "ckpt"
        file = folder / name
        file.write_bytes(data.draw(damaged(file.read_bytes(), _kind(name)), label=name))
        if forge:
            _forge_manifest(folder)
        _expect_clear_failure(lambda: load_model(folder), folder)
    finally:
        shutil.rmtree(root)


HF_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]


@given(st.data(), st.sampled_from(HF_FILES))
def test_a_damaged_pretrained_folder_loads_or_is_refused_naming_it(data, name):
    root = _workspace()
    try:
        file = root / "hf" / name
        file.write_bytes(data.draw(damaged(file.read_bytes(), _kind(name)), label=name))
        _expect_clear_failure(lambda: load_pretrained(root / "hf"), root / "hf")
    finally:
        shutil.rmtree(root)


@given(st.data(), st.sampled_from(["char.model", "bpe.model", "ranks.tiktoken"]))
def test_a_damaged_tokenizer_file_loads_or_is_refused_naming_it(data, name):
    root = _workspace()
    try:
        file = root / name
        file.write_bytes(data.draw(damaged(file.read_bytes(), "text"), label=name))
        if name.endswith(".tiktoken"):
            _expect_clear_failure(lambda: BPETokenizer.from_tiktoken(file), file)
        else:
            _expect_clear_failure(lambda: tokenizer.load(file), file)
    finally:
        shutil.rmtree(root)


@given(st.data())
def test_safetensors_headers_are_proven_against_the_file_before_any_read(data):
    """What check_safetensors accepts, the library loads; what it refuses, it names, without allocating what a
    forged header claims."""
    root = Path(tempfile.mkdtemp(prefix="hostile-st-"))
    try:
        file = root / "w.safetensors"
        save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(4, np.float64)}, str(file))
        file.write_bytes(data.draw(damaged(file.read_bytes(), "safetensors")))
        tracemalloc.start()
        try:
            check_safetensors(file)
        except SafetensorsFileError as e:
            assert str(file) in str(e)
        else:
            tensors = load_file(str(file))  # accepted: the library agrees, and every byte is accounted for
            assert sum(t.nbytes for t in tensors.values()) <= file.stat().st_size
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 8 * file.stat().st_size + SLACK_BYTES
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("key, value", [("n_layer", 10**9), ("n_embd", 10**5), ("vocab_size", 10**9),
                                        ("block_size", 10**9), ("n_layer", 2)])
def test_a_forged_config_never_builds_a_model_the_weights_cannot_be(tmp_path, key, value):
    """A config is a few bytes to forge; building the model it describes could ask for terabytes. Both loaders
    compare it with the stored weights' shapes first."""
    root = _workspace()
    try:
        config = root / "ckpt" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), key: value}), encoding="utf-8")
        _forge_manifest(root / "ckpt")
        error = _expect_clear_failure(lambda: load_model(root / "ckpt"), root / "ckpt")
        assert isinstance(error, CheckpointError) and f"{config}: not the configuration of these weights" in str(error)
        hf_key = {"block_size": "n_positions"}.get(key, key)
        config = root / "hf" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), hf_key: value}), encoding="utf-8")
        error = _expect_clear_failure(lambda: load_pretrained(root / "hf"), root / "hf")
        assert isinstance(error, PretrainedError) and f"{root / 'hf'}: the config " in str(error)
    finally:
        shutil.rmtree(root)


def test_merges_that_double_a_token_each_line_are_refused_not_allocated(tmp_path):
    """40 lines of 'merge the last token with itself' spell a terabyte; the reader stops at its budget."""
    lines = ["nanograd-gpt tokenizer 1", "kind bpe", "pattern null", "bytes identity", "special_tokens 0",
             "merges 40", "97 97", *(f"{255 + k} {255 + k}" for k in range(1, 40))]
    path = tmp_path / "doubling.model"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(tokenizer.ModelFileError, match=f"{re.escape(str(path))}, line .*: the merges spell tokens"):
        tokenizer.load(path)


def test_a_rank_file_with_one_megabyte_token_is_refused_quickly(tmp_path):
    """Finding a token's cut tries each distinct token length, not each of its bytes: linear, not quadratic."""
    ranks = [bytes([b]) for b in range(256)] + [b"x" * 1_000_000]
    path = tmp_path / "huge.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(ranks)), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: token .* is not two tokens of lower rank"):
        BPETokenizer.from_tiktoken(path)
    # The byte-by-byte search was quadratic: 3.7 s at 80 KB (measured under shared load), so ~10 min at 1 MB.
    assert time.perf_counter() - start < 5


def test_no_reader_unpickles_or_evaluates():
    """Loading never executes code: no pickle, no eval/exec, no torch.load anywhere in the library."""
    # eval( and exec( as builtins, not as methods (model.eval()) or their definitions
    forbidden = re.compile(r"\bpickle\b|allow_pickle\s*=\s*True|(?<![.\w])(?<!def )(eval|exec)\(|torch\.load|\bmarshal\b")
    offenders = [f"{path.relative_to(REPO)}:{n}" for package in ("nanograd", "gpt", "tokenizer")
                 for path in sorted((REPO / package).rglob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if forbidden.search(line)]
    assert offenders == []
