"""Check a .safetensors file against its own header before any library maps or reads it.

A safetensors file is
    8 bytes        N, the header's length (little-endian uint64)
    N bytes        a JSON object: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
                   plus an optional "__metadata__": {str: str}
    the rest       the tensors' bytes, each at [begin, end) of this buffer, with no holes and no overlaps

A hostile or damaged file can claim anything: a header of terabytes, offsets past the end, two tensors over
the same bytes, a shape whose size does not match its bytes, an unknown dtype, JSON nested ten thousand deep.
`check_safetensors` reads only the header (its length is checked against the file's size first, so it never
allocates more than the file holds) and proves every claim against the file's size; loading then cannot ask
for memory the file does not justify. The format holds no code: nothing here (or in safetensors) unpickles.
"""
import json
import math
import struct
from pathlib import Path

# Bytes per element of each dtype safetensors defines.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


class SafetensorsFileError(ValueError):
    """A .safetensors file whose header is malformed or contradicts the file."""


def check_safetensors(path, dtypes=None):
    """The header {name: (dtype, shape)} of the file at `path` after checking it (see the module docstring);
    `dtypes` restricts which dtypes are accepted. Raises SafetensorsFileError naming the file and the problem."""
    path = Path(path)

    def fail(problem):
        return SafetensorsFileError(f"{path}: not a valid safetensors file: {problem}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise fail(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise fail(f"the header claims {n:,} bytes but the file has {size - 8:,} after the length")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise fail(f"the header is not UTF-8 JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(header, dict):
        raise fail(f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("__metadata__ must map names to strings")
    data_size, spans, tensors = size - 8 - n, [], {}
    for name, info in header.items():
        if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
            raise fail(f"tensor {name!r}: expected exactly dtype, shape and data_offsets, got {_short(info)}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES or (dtypes is not None and dtype not in dtypes):
            allowed = sorted(DTYPE_SIZES) if dtypes is None else list(dtypes)
            raise fail(f"tensor {name!r} has dtype {_short(dtype)}; expected one of {', '.join(allowed)}")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise fail(f"tensor {name!r}: shape {_short(shape)} is not a list of sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1] <= data_size):
            raise fail(f"tensor {name!r}: data_offsets {_short(offsets)} are not [begin, end] within the "
                       f"{data_size:,} data bytes")
        if math.prod(shape) * DTYPE_SIZES[dtype] != offsets[1] - offsets[0]:
            raise fail(f"tensor {name!r}: shape {shape} of {dtype} needs {math.prod(shape) * DTYPE_SIZES[dtype]:,} "
                       f"bytes, its offsets span {offsets[1] - offsets[0]:,}")
        spans.append((offsets[0], offsets[1], name))
        tensors[name] = (dtype, tuple(shape))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else f"leaves a hole at byte {end:,}"
            raise fail(f"tensor {name!r} (bytes {begin:,}..{stop:,}) {what}")
        end = stop
    if end != data_size:
        raise fail(f"the tensors cover {end:,} of the {data_size:,} data bytes")
    return tensors


def _is_count(value):
    return type(value) is int and value >= 0  # bool is not a size


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_weight_shapes(config, shapes):
    """Raise ValueError unless stored weights {name: shape} can be the model of `config` (its weight_shapes():
    the embeddings and one weight per layer). Checked before a model is built from a config read from a file,
    which is cheap to forge and could otherwise ask for any amount of memory."""
    shapes = {name.removeprefix("transformer."): tuple(shape) for name, shape in shapes.items()}
    for name, shape in config.weight_shapes():
        if shapes.get(name) != shape:
            raise ValueError(f"the config implies {name} of shape {shape}, the weights hold {shapes.get(name, 'none')}")
