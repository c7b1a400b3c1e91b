"""A decoder-only transformer (GPT-2 architecture) on nanograd, trained and sampled on CPU."""
from gpt.model import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
