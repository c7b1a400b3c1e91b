"""GPT-2 checkpoints in the Hugging Face layout: run OpenAI's published weights here, and save our models so
that other tools open them.

A Hugging Face GPT-2 folder holds
    config.json              GPT2Config: n_layer, n_head, n_embd, n_positions, vocab_size, ...
    model.safetensors        the weights, under GPT-2's names
    vocab.json, merges.txt   the tokenizer (OpenAI's original release calls them encoder.json, vocab.bpe)

Our parameter names are GPT-2's. Two things differ in how the weights are stored: GPT-2's Conv1D layers
(c_attn, c_proj, c_fc) keep their weight as (in, out) where our Linear keeps (out, in), so those four are
transposed; and the output head is tied to the token embedding, so `lm_head.weight` is not stored (a file
that has it must hold a copy of `wte.weight`). Files written by transformers' `GPT2LMHeadModel` prefix every
name with `transformer.`, OpenAI's converted release does not; both load. The causal-mask buffers
`attn.bias` and `attn.masked_bias` that older files carry are constants, not weights, and are skipped.

Loading copies one tensor at a time from the file into the arrays of a freshly built model, so the peak
memory is the model plus its largest tensor (and the constructor's temporaries), not two full copies.
"""
import json
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tokenizer import GPT2_SPLIT_PATTERN, BPETokenizer
from tokenizer import load as load_tokenizer_model
from tokenizer.interop import write_gpt2_files
from gpt.storage.atomic import replace_dir_atomic
from gpt.model import GPT, GPTConfig, RECIPES
from gpt.storage.safetensors_header import check_safetensors, check_weight_shapes

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_MODEL_FILE = "tokenizer.model"  # our own format, for tokenizers GPT-2's files cannot express
GPT2_TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))  # (HF, OpenAI) names
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_FLOAT_DTYPES = ("F16", "F32", "F64")


class PretrainedError(ValueError):
    """A pretrained folder is incomplete, or does not fit the GPT-2 architecture."""


def load_pretrained(path):
    """(GPT in eval mode, tokenizer) from a Hugging Face style GPT-2 folder (see the module docstring)."""
    model = load_pretrained_model(path)
    tok = load_tokenizer(path)
    if tok.vocab_size > model.config.vocab_size:
        raise PretrainedError(f"{path}: the tokenizer has {tok.vocab_size} tokens but the model only "
                              f"{model.config.vocab_size} embeddings")
    return model, tok


def load_pretrained_model(path):
    """The GPT alone (eval mode) from a pretrained folder's config.json and model.safetensors."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no pretrained model folder at {folder}")
    config = config_from_hf(_read_config(folder / CONFIG_FILE), folder / CONFIG_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    try:  # the header proven against the file, the config against the header, before the model is built
        header = check_safetensors(weights, _FLOAT_DTYPES)
        check_weight_shapes(config, {name: shape for name, (_, shape) in header.items()})
    except ValueError as e:
        raise PretrainedError(f"{folder}: {e}") from None
    model = GPT(config)
    load_weights(model, weights)
    return model.eval()


def config_from_hf(hf, source="config.json"):
    """A GPTConfig from a transformers GPT2Config dict; clear errors for settings our GPT does not have."""
    missing = [key for key in ("n_layer", "n_head", "n_embd", "vocab_size") if key not in hf]
    if "n_positions" not in hf and "n_ctx" not in hf:
        missing.append("n_positions")
    if missing:
        raise PretrainedError(f"{source}: missing {', '.join(missing)}")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise PretrainedError(f"{source}: model_type is {hf['model_type']!r}, only 'gpt2' can be loaded")
    # Each entry: a setting, its GPT-2 default, and the value(s) our architecture computes.
    supported = {
        "activation_function": ("gelu_new", ("gelu_new", "gelu_pytorch_tanh")),  # tanh-approximated GELU
        "layer_norm_epsilon": (1e-5, (1e-5,)),
        "n_inner": (None, (None, 4 * hf["n_embd"])),
        "scale_attn_weights": (True, (True,)),
        "scale_attn_by_inverse_layer_idx": (False, (False,)),
        "tie_word_embeddings": (True, (True,)),
    }
    for key, (default, allowed) in supported.items():
        value = hf.get(key, default)
        if value not in allowed:
            raise PretrainedError(f"{source}: {key} = {value!r} is not supported (this GPT computes {allowed[0]!r})")
    try:
        return GPTConfig(
            block_size=hf.get("n_positions", hf.get("n_ctx")), vocab_size=hf["vocab_size"],
            n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
            dropout=float(hf.get("resid_pdrop", 0.0)), bias=True,
        )
    except ValueError as e:
        raise PretrainedError(f"{source}: {e}") from None


def config_to_hf(config):
    """The transformers GPT2Config dict of a GPTConfig (GPT-2 has biases, so bias=False cannot be written)."""
    if not config.bias:
        raise PretrainedError("the GPT-2 layout has biases in every Linear and LayerNorm; a model built with "
                              "bias=False cannot be saved in it")
    other = [f"{part}={getattr(config, part)!r}" for part in ("positions", "norm", "mlp", "qk_norm")
             if getattr(config, part) != RECIPES["gpt2"][part]]
    if other:
        raise PretrainedError(f"the GPT-2 layout holds GPT-2's parts only; this model has {', '.join(other)} "
                              f"(recipe {config.recipe!r})")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True, "tie_word_embeddings": True,
    }


def load_weights(model, weights_path):
    """Copy the tensors of a GPT-2 safetensors file into `model`'s parameters, one tensor at a time.

    Every name, shape and dtype is checked before any data is read; errors name the offending tensors."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"weights file not found: {weights_path}")
    targets = {name: array for name, array in model.state_dict().items() if name != "lm_head.weight"}
    try:
        with _open(weights_path) as f:
            plan, tied_head = _match_names(f.keys(), targets, weights_path)
            for file_key, name in plan.items():
                _check_tensor(f.get_slice(file_key), file_key, name, targets[name].shape, weights_path)
        for file_key, name in plan.items():
            # The file is memory-mapped while open, and every page read stays resident until it is closed;
            # reopening it per tensor keeps the peak at the model plus one tensor, not plus the whole file.
            with _open(weights_path) as f:
                tensor = f.get_tensor(file_key)
            targets[name][...] = tensor.T if name.endswith(CONV1D_WEIGHTS) else tensor
        if tied_head is not None:
            with _open(weights_path) as f:
                _check_tied_head(f, tied_head, targets["transformer.wte.weight"], weights_path)
    except SafetensorError as e:
        raise PretrainedError(f"{weights_path}: unreadable safetensors file ({e})") from None


def _open(weights_path):
    return safe_open(str(weights_path), framework="numpy")


def _match_names(file_keys, targets, source):
    """{file key: our parameter name} for every weight, and the file's lm_head key if it has one."""
    plan, tied_head, unexpected = {}, None, []
    for key in file_keys:
        short = key.removeprefix("transformer.")
        if _MASK_BUFFER.match(short):
            continue
        if short == "lm_head.weight":
            tied_head = key
        elif "transformer." + short in targets:
            if "transformer." + short in plan.values():
                raise PretrainedError(f"{source}: {short} is stored twice (with and without 'transformer.')")
            plan[key] = "transformer." + short
        else:
            unexpected.append(key)
    missing = sorted(set(targets) - set(plan.values()))
    if missing or unexpected:
        raise PretrainedError(
            f"{source}: {len(plan)} of the {len(targets)} expected weights found; "
            f"missing {[name.removeprefix('transformer.') for name in missing]}, unexpected {unexpected}"
        )
    return plan, tied_head


def _check_tensor(tensor_slice, file_key, name, shape, source):
    dtype = tensor_slice.get_dtype()
    if dtype not in _FLOAT_DTYPES:
        raise PretrainedError(f"{source}: {file_key} has dtype {dtype}; NumPy can load {', '.join(_FLOAT_DTYPES)}")
    stored = tuple(tensor_slice.get_shape())
    expected = shape[::-1] if name.endswith(CONV1D_WEIGHTS) else shape  # Conv1D stores (in, out)
    if stored != expected:
        raise PretrainedError(f"{source}: {file_key} has shape {stored}, expected {expected} from the config")


def _check_tied_head(f, key, wte, source):
    """A stored output head is accepted only as the tied copy of the token embedding our GPT uses."""
    head = f.get_tensor(key)
    if head.shape != wte.shape or not np.array_equal(head, wte):
        raise PretrainedError(f"{source}: {key} differs from wte.weight; this GPT ties its output head to the "
                              "token embedding and cannot load a separate one")


def load_tokenizer(folder):
    """The tokenizer of a pretrained folder: vocab.json + merges.txt, encoder.json + vocab.bpe (GPT-2's
    byte-level BPE), or our tokenizer.model."""
    folder = Path(folder)
    for encoder_file, merges_file in GPT2_TOKENIZER_FILES:
        present = [(folder / name).is_file() for name in (encoder_file, merges_file)]
        if all(present):
            return BPETokenizer.from_gpt2_files(folder / encoder_file, folder / merges_file)
        if any(present):
            lacking = merges_file if present[0] else encoder_file
            raise FileNotFoundError(f"{folder}: tokenizer file {lacking} is missing "
                                    f"({encoder_file} and {merges_file} go together)")
    if (folder / TOKENIZER_MODEL_FILE).is_file():
        return load_tokenizer_model(folder / TOKENIZER_MODEL_FILE)
    raise FileNotFoundError(f"{folder}: no tokenizer; expected vocab.json + merges.txt, encoder.json + vocab.bpe, "
                            f"or {TOKENIZER_MODEL_FILE}")


def save_pretrained(model, path, tokenizer=None):
    """Write `model` (and its tokenizer) as a Hugging Face GPT-2 folder, atomically: the folder is built
    under a temporary name and renamed into place.

    A byte-level BPE with GPT-2's split pattern is written as vocab.json + merges.txt; any other tokenizer
    (characters, another split pattern) as tokenizer.model, which load_pretrained reads but other tools do not.
    """
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise PretrainedError("the GPT-2 layout stores a tied output head; this model's lm_head is untied")
    hf_config = config_to_hf(model.config)
    with replace_dir_atomic(path) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
        weights = {
            name: np.ascontiguousarray(array.T if name.endswith(CONV1D_WEIGHTS) else array)
            for name, array in model.state_dict().items() if name != "lm_head.weight"
        }
        # transformers refuses safetensors files whose metadata does not name a framework it knows.
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            _save_tokenizer(tokenizer, tmp)


def _save_tokenizer(tok, folder):
    if isinstance(tok, BPETokenizer) and tok.pattern == GPT2_SPLIT_PATTERN:
        write_gpt2_files(tok, folder / "vocab.json", folder / "merges.txt")
    else:
        # save() writes PREFIX.model and PREFIX.vocab (a human-readable listing).
        tok.save(folder / Path(TOKENIZER_MODEL_FILE).stem)


def _read_config(path):
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise PretrainedError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config
