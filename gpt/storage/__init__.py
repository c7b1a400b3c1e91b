"""Storage: files written atomically (atomic.py), checkpoints and their one loader (checkpoint.py), the
checks a .safetensors file passes before it is read (safetensors_header.py), GPT-2 folders in the Hugging
Face layout, in and out (gpt2_folders.py), and figures as PNG files (figures.py)."""
from gpt.storage.atomic import write_atomic
from gpt.storage.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model, save_checkpoint
from gpt.storage.figures import pyplot, save_png
from gpt.storage.gpt2_folders import PretrainedError, load_pretrained, save_pretrained

__all__ = ["Checkpoint", "CheckpointError", "PretrainedError", "load_checkpoint", "load_model", "load_pretrained",
           "pyplot", "save_checkpoint", "save_png", "save_pretrained", "write_atomic"]
