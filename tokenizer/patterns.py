"""The published pre-split patterns: text is cut into chunks with these before BPE runs.

Pairs never cross a chunk boundary, so the pattern decides which tokens can exist at all: GPT-2's
keeps a leading space with the word after it (" the"); GPT-4's (cl100k_base) also caps digit runs at
three, folds case-insensitive contractions and keeps newlines apart. These are the exact strings
tiktoken runs (possessive quantifiers, equivalent to the original release but faster), so chunks
match tiktoken's byte for byte. They need the `regex` package for \\p{L} and possessive `++`.
"""

GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# Names accepted on the command line and by the benchmark.
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "none": None}
