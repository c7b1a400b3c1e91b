"""Instruction fine-tuning data: the prompt template, the added tokens, and batches whose loss counts only
the response.

A record (instruction, input, output) becomes one token sequence, in the Alpaca layout:

    ### Instruction:
    Who speaks next?

    ### Input:                       (only when the record has an input)
    HAMLET:
    To be, or not to be: that is the question:

    ### Response:
    OPHELIA<|end|>

`<|end|>` is one added token, the end-of-response marker: the model learns to emit it, and generation stops
there (as a chat model stops at its end-of-turn token). Alpaca's one-sentence preamble ("Below is an
instruction...") is left out: it says nothing a fine-tuned model needs, and our models read 128 tokens.

Training on such a sequence is next-token prediction as in pretraining, with two differences:
- sequences differ in length, so a batch pads them to one length with the end token, and the targets of
  padding are `IGNORE` (-1), which the loss skips (F.cross_entropy's ignore_index);
- by default the prompt's targets are `IGNORE` too (mask_prompt): the loss is the mean over the response
  tokens (and the end marker) only, so the model is taught to answer, not to write questions.
"""
import re

import numpy as np

from nanograd.nn import Parameter

END = "<|end|>"
IGNORE = -1  # a target that does not count in the loss (GPT.forward passes it as ignore_index)


def format_prompt(instruction, input=""):
    """The prompt text of a record: everything the model reads before its response."""
    text = f"### Instruction:\n{instruction}\n\n"
    if input:
        text += f"### Input:\n{input}\n\n"
    return text + "### Response:\n"


class InstructVocab:
    """A tokenizer's vocabulary plus added tokens, with ids from `base_size` up: the end marker first, then
    any character of the template or the data that a character-level vocabulary lacks (a char tokenizer
    trained on the plays has no "#"). A byte-level BPE can spell any text, so only the marker is added."""

    def __init__(self, tok, base_size, added):
        if not added or added[0] != END:
            raise ValueError(f"the added tokens must start with the end marker {END!r}, got {added!r}")
        self.tok, self.base_size, self.added = tok, base_size, list(added)
        self.end_id = base_size
        self._added_id = {token: base_size + i for i, token in enumerate(self.added)}
        self._split = re.compile("(" + "|".join(map(re.escape, sorted(self.added, key=len, reverse=True))) + ")")

    @classmethod
    def for_texts(cls, tok, base_size, texts):
        """The vocabulary that can encode every string of `texts` (and the template) with `tok`'s ids."""
        added = [END]
        if hasattr(tok, "char_to_id"):  # a character tokenizer: add the characters it has never seen
            needed = set(format_prompt("x", "y")).union(*map(set, texts))
            added += sorted(needed - set(tok.char_to_id))
        return cls(tok, base_size, added)

    @property
    def size(self):
        return self.base_size + len(self.added)

    def encode(self, text):
        """Ids of `text`: added tokens by their own ids, the pieces between them by the base tokenizer."""
        ids = []
        for piece in self._split.split(text):
            if piece in self._added_id:
                ids.append(self._added_id[piece])
            elif piece:
                ids += self.tok.encode(piece)
        return ids

    def decode_bytes(self, ids):
        """UTF-8 bytes of ids (so gpt.generate.stream_text can decode a byte-level BPE incrementally)."""
        out = b""
        for i in ids:
            if i >= self.base_size:
                out += self.added[i - self.base_size].encode("utf-8")
            elif hasattr(self.tok, "decode_bytes"):
                out += self.tok.decode_bytes([i])
            else:
                out += self.tok.decode([i]).encode("utf-8")
        return out

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def grow_token_embeddings(model, vocab_size):
    """Append rows to the token embedding and the output head (tied to it or not) up to `vocab_size`.

    Each new row is the mean of the existing rows: a new token then starts as an "average" token, neither
    close to a particular one nor far outside the cloud of embeddings that the layers were trained on, and
    as an output its logit starts at the average logit, so it is not predicted before it is learned (a
    random row of the pretrained rows' size would be; a zero row gives logit 0, which may be large)."""
    wte = model.transformer.wte
    old = wte.weight.data
    if vocab_size < len(old):
        raise ValueError(f"cannot shrink the vocabulary from {len(old)} to {vocab_size} tokens")
    if vocab_size == len(old):
        return model
    tied = model.lm_head.weight is wte.weight
    new_rows = np.repeat(old.mean(axis=0, keepdims=True), vocab_size - len(old), axis=0)
    wte.weight = Parameter(np.concatenate([old, new_rows]).astype(old.dtype))
    if tied:
        model.lm_head.weight = wte.weight  # keep the head tied to the (new) embedding
    else:  # an untied head grows the same way: a new token's logit starts at the average logit
        head = model.lm_head.weight.data
        rows = np.repeat(head.mean(axis=0, keepdims=True), vocab_size - len(head), axis=0)
        model.lm_head.weight = Parameter(np.concatenate([head, rows]).astype(head.dtype))
    model.config.vocab_size = vocab_size
    return model


def encode_record(vocab, record):
    """(ids, n_prompt): the record's prompt, response and end marker as one id array, and the prompt's length."""
    prompt = vocab.encode(format_prompt(record.instruction, record.input))
    response = vocab.encode(record.output) + [vocab.end_id]
    return np.asarray(prompt + response, dtype=np.int64), len(prompt)


def collate(encoded, pad_id, mask_prompt=True, length=None):
    """Inputs x and targets y, int64 (B, T), from [(ids, n_prompt)]: y is x shifted by one.

    T = the longest sequence minus one, or `length`. Positions past a sequence's end hold pad_id in x and
    IGNORE in y; with mask_prompt, so do the targets inside the prompt: y[t] is the token at t + 1, so the
    first target that counts is at t = n_prompt - 1, the first response token."""
    T = length or max(len(ids) for ids, _ in encoded) - 1
    x = np.full((len(encoded), T), pad_id, dtype=np.int64)
    y = np.full((len(encoded), T), IGNORE, dtype=np.int64)
    for row, (ids, n_prompt) in enumerate(encoded):
        if len(ids) - 1 > T:
            raise ValueError(f"a record of {len(ids)} tokens does not fit in {T + 1}")
        n = len(ids) - 1
        x[row, :n] = ids[:-1]
        y[row, :n] = ids[1:]
        if mask_prompt:
            y[row, : n_prompt - 1] = IGNORE
    return x, y


def greedy_correct(model, encoded, batch_size=64):
    """bool (N,): does greedy decoding reproduce each record's response and end marker exactly?

    Computed in one forward per batch, without generating: greedy decoding writes the right response if and
    only if, at every response position, the most likely next token given the right prefix is the right
    token (by induction over the positions; tests/test_instruct.py checks it against real generation)."""
    correct = []
    with model.evaluating():
        for start in range(0, len(encoded), batch_size):
            x, y = collate(encoded[start : start + batch_size], pad_id=0, mask_prompt=True)
            predicted = model(x)[0].data.argmax(axis=-1)  # (B, T)
            counted = y != IGNORE
            correct += list(((predicted == y) | ~counted).all(axis=1))
    return np.asarray(correct, dtype=bool)
