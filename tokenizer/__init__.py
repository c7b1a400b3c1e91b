"""Byte-level BPE and character tokenizers."""
