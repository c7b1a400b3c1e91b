"""Checkpoints: one directory per checkpoint, written atomically.

Layout of a checkpoint directory:
    model.safetensors      the weights, {name: array} (safetensors' NumPy API)
    config.json            the model configuration (a plain dict)
    state.safetensors      the arrays of state.json (the optimizer moments), under dotted names
    state.json             everything else: step, RNG states, the optimizer's scalars, extra trainer data,
                           with each array replaced by a reference into state.safetensors
    tokenizer.model        a copy of the tokenizer file (optional)
    manifest.json          format version and the SHA-256 of every file above, written last

Atomicity: the whole directory is written under a temporary name and renamed into place. Replacing an
existing checkpoint takes two renames (old -> `<dir>.old`, new -> `<dir>`); if a crash falls between them,
`load_checkpoint` finds the complete previous checkpoint under `<dir>.old`. Corruption of any file (a
truncated write, a flipped bit) is caught by the manifest's digests and reported naming the file. A save that
fails (a full disk: any OSError) leaves the previous checkpoint as it was and says so.

Every file is checked before it is trusted, in case it was crafted rather than damaged (a matching manifest
is easy to forge): safetensors headers against the file's size (gpt/storage/safetensors_header.py), the JSON
files' structure, and the configuration against the stored weights' shapes before a model is built from it,
so a small file cannot make the loader allocate a huge model. Nothing is unpickled.
"""
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

import tokenizer
from gpt import families
from gpt.storage.atomic import previous_dir, replace_dir_atomic
from gpt.storage.safetensors_header import SafetensorsFileError, check_safetensors, check_weight_shapes

NUMPY_FLOATS = ("F16", "F32", "F64")
FORMAT = "nanograd-gpt-checkpoint"
VERSION = 1
TOKENIZER_FILE = "tokenizer.model"


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete or corrupt."""


@dataclass
class Checkpoint:
    """What a checkpoint holds. `optimizer` and `extra` are nested dicts/lists of JSON values and arrays."""

    model: dict  # {parameter name: ndarray}
    config: dict
    step: int = 0
    optimizer: dict = None
    rng: dict = field(default_factory=dict)  # e.g. {"numpy": Generator state, "nanograd": engine state}
    extra: dict = field(default_factory=dict)
    tokenizer_path: Path = None  # set by load_checkpoint when the directory holds a tokenizer
    path: Path = None  # the directory it was loaded from

    def model_config(self):
        """The config of the stored model (a GPTConfig or an LSTMConfig, see gpt/families.py), checked against
        the stored weights before anyone builds it."""
        source = self.path / "config.json" if self.path else "config.json"
        try:
            config = families.config_from_dict(self.config)
            check_weight_shapes(config, {name: array.shape for name, array in self.model.items()})
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: not the configuration of these weights ({e})") from None
        return config

    def build_model(self):
        """The stored model with its weights, in eval mode."""
        model = families.build(self.model_config())
        try:
            model.load_state_dict(self.model)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{self.path}: the weights do not fit the model of its config.json ({e})") from None
        return model.eval()

    def load_tokenizer(self):
        """The tokenizer saved with the model (ValueError if the checkpoint holds none)."""
        if self.tokenizer_path is None:
            raise ValueError(f"checkpoint {self.path} holds no tokenizer, so its ids cannot be turned into text")
        return tokenizer.load(self.tokenizer_path)


def load_model(path):
    """(model in eval mode, tokenizer) from a checkpoint directory: the one way back from a checkpoint to a
    model (python -m gpt.sample, gpt.chat, the examples)."""
    ckpt = load_checkpoint(path)
    return ckpt.build_model(), ckpt.load_tokenizer()


def save_checkpoint(path, ckpt, tokenizer_file=None):
    """Write `ckpt` (a Checkpoint) to the directory `path`, atomically; `tokenizer_file` is copied in.
    Raises CheckpointError if writing fails (a full disk), with the previous checkpoint left intact."""
    try:
        _save(Path(path), ckpt, tokenizer_file)
    except OSError as e:
        raise CheckpointError(f"could not save the checkpoint at step {ckpt.step} to {path} ({e}); the previous "
                              "checkpoint there, if any, is intact") from e


def _save(path, ckpt, tokenizer_file):
    with replace_dir_atomic(path) as tmp:
        arrays = {}
        state = {
            "step": int(ckpt.step),
            "rng": ckpt.rng,
            "optimizer": _to_json(ckpt.optimizer, arrays, "optimizer"),
            "extra": _to_json(ckpt.extra, arrays, "extra"),
        }
        save_file({k: np.ascontiguousarray(v) for k, v in ckpt.model.items()}, str(tmp / "model.safetensors"))
        save_file(arrays, str(tmp / "state.safetensors"))
        _write_json(tmp / "config.json", ckpt.config)
        _write_json(tmp / "state.json", state)
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, tmp / TOKENIZER_FILE)
        digests = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        _write_json(tmp / "manifest.json", {"format": FORMAT, "version": VERSION, "files": digests})


def load_checkpoint(path):
    """Read a checkpoint directory written by save_checkpoint; raises CheckpointError naming the bad file."""
    path = Path(path)
    if not path.exists():
        previous = previous_dir(path)
        if not previous.exists():
            raise CheckpointError(f"no checkpoint at {path}")
        path = previous  # a save was interrupted between its two renames; this is the last complete one
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory")
    manifest = _read_json(path / "manifest.json")
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT and manifest.get("version") == VERSION
            and isinstance(manifest.get("files"), dict)):
        raise CheckpointError(
            f"{path / 'manifest.json'}: not a {FORMAT} version {VERSION} manifest "
            f"(format={_get(manifest, 'format')!r}, version={_get(manifest, 'version')!r})"
        )
    for name, digest in manifest["files"].items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise CheckpointError(f"{path / 'manifest.json'}: {name[:60]!r} is not a file name in the checkpoint")
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file missing: {file}")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint file corrupt (its SHA-256 does not match the manifest): {file}")
    for required in ("model.safetensors", "state.safetensors", "config.json", "state.json"):
        if required not in manifest.get("files", {}):
            raise CheckpointError(f"checkpoint file missing: {path / required}")
    state = _read_json(path / "state.json")
    kinds = {"step": int, "rng": dict, "optimizer": (dict, type(None)), "extra": dict}
    for key, kind in kinds.items():
        if not isinstance(state, dict) or not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(f"{path / 'state.json'}: '{key}' is missing or not a {_names(kind)}")
    if state["step"] < 0:
        raise CheckpointError(f"{path / 'state.json'}: step {state['step']} is negative")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    arrays = _read_safetensors(path / "state.safetensors")
    tokenizer = path / TOKENIZER_FILE
    try:
        optimizer, extra = _from_json(state["optimizer"], arrays), _from_json(state["extra"], arrays)
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path / 'state.json'}: malformed array references ({type(e).__name__}: {e})") from None
    return Checkpoint(
        model=_read_safetensors(path / "model.safetensors", NUMPY_FLOATS),
        config=config,
        step=state["step"],
        optimizer=optimizer,
        rng=state["rng"],
        extra=extra,
        tokenizer_path=tokenizer if tokenizer.is_file() else None,
        path=path,
    )


def _get(obj, key):
    return obj.get(key) if isinstance(obj, dict) else None


def _names(kind):
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def _to_json(obj, arrays, name):
    """Replace every ndarray inside `obj` by {"__array__": key}, storing it in `arrays[key]`.

    Dicts with non-string keys (an optimizer's per-parameter state is keyed by int) and tuples are tagged
    so that _from_json restores them exactly."""
    if isinstance(obj, np.ndarray):
        arrays[name] = np.ascontiguousarray(obj)
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _to_json(v, arrays, f"{name}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, _to_json(v, arrays, f"{name}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v, arrays, f"{name}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_to_json(v, arrays, f"{name}.{i}") for i, v in enumerate(obj)]
    return obj


def _from_json(obj, arrays):
    if isinstance(obj, list):
        return [_from_json(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__items__" in obj:
        return {k: _from_json(v, arrays) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_from_json(v, arrays) for v in obj["__tuple__"])
    return {k: _from_json(v, arrays) for k, v in obj.items()}


def _write_json(path, obj):
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def _read_json(path):
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file corrupt (invalid JSON: {e}): {path}") from e


def _read_safetensors(path, dtypes=None):
    try:
        check_safetensors(path, dtypes)
        return load_file(str(path))
    except SafetensorsFileError as e:
        raise CheckpointError(f"checkpoint file corrupt ({e})") from None
    except (SafetensorError, OSError, TypeError) as e:
        raise CheckpointError(f"checkpoint file corrupt (unreadable safetensors: {e}): {path}") from e


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # in chunks: never the whole file in memory
