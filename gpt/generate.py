"""Generation: run the model one new position at a time, with a KV cache, and choose each next token.

Everything generation needs lives here: the cache of keys and values, the sampling rules (temperature,
top-k, top-p, greedy), and the loops that yield ids or text. The model itself is the training model,
run under `no_grad()`: a change to the architecture is made once, in gpt/model.py.

    logits = model(prompt, cache=cache)[0][:, -1]     # prefill: the whole prompt at once, caching k and v
    logits = model(next_id, cache=cache)[0][:, -1]    # then one position per token
(with a cache the model computes the logits of the last position only).
"""
import codecs

import numpy as np

from nanograd import Tensor, no_grad


class LayerCache:
    """One attention layer's keys and values: (B, nh, block_size, hs) buffers, of which the first
    min(length, block_size) positions are filled. `length` counts every position seen."""

    def __init__(self, shape, dtype):
        self.k, self.v = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self.length = 0

    def append(self, k, v):
        """Store k, v (B, nh, T, hs) after the cached positions; return all keys and values held as Tensors
        (B, nh, S, hs). Generation runs under no_grad, so nothing here needs a gradient.

        Past block_size positions (a sliding window, for rotary positions only: see KVCache) one new position
        overwrites the oldest, at slot length % block_size. The slots are then out of order, which a single
        query does not mind: it sees every key, and the sum over keys does not depend on their order."""
        window, T = self.k.shape[2], k.shape[2]
        if self.length + T <= window:
            slots = slice(self.length, self.length + T)
        elif T == 1:
            slots = slice(self.length % window, self.length % window + 1)
        else:
            raise ValueError(f"a full KV cache takes one position at a time, got {T}")
        self.k[:, :, slots] = k.data
        self.v[:, :, slots] = v.data
        self.length += T
        held = min(self.length, window)
        return Tensor(self.k[:, :, :held]), Tensor(self.v[:, :, :held])


class KVCache:
    """The keys and values of every layer, for a batch of `batch_size` sequences: the last block_size positions.

    With learned positions the window cannot slide (every position's embedding would change), so a full cache
    must be rebuilt from the last block_size tokens. With rotary positions the stored keys keep their turn and
    attention sees only distances, so the window slides: the newest position replaces the oldest."""

    def __init__(self, config, batch_size, dtype=np.float32):
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.layers = [LayerCache(shape, dtype) for _ in range(config.n_layer)]
        self.slides = config.positions == "rotary"

    @property
    def length(self):
        return self.layers[0].length

    @property
    def full(self):
        """Whether the next token needs a new window: the cache holds block_size positions and cannot slide."""
        return not self.slides and self.length >= self.layers[0].k.shape[2]

    def clear(self):
        for layer in self.layers:
            layer.length = 0


def next_logits(model, idx, cache):
    """Logits (B, vocab_size) of the token after idx (B, T), whose ids follow the cache's positions."""
    with no_grad():
        logits, _ = model(idx, cache=cache)  # (B, 1, vocab_size): the last position's only
    return logits.data[:, -1]


def sample_next_token(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """Pick one token per row of `logits` (B, V); returns int64 ids (B,).

    temperature 0 is greedy (argmax, no randomness). Otherwise the logits are divided by the temperature,
    restricted to the `top_k` most likely tokens and then to the smallest set of most likely tokens whose
    probability reaches `top_p`, and one token is drawn with `rng` (an np.random.Generator).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, V), got shape {logits.shape}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth_largest, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        probs = _nucleus(probs, top_p)
    # Inverse-CDF draw: the first token whose cumulative probability exceeds u. Tokens of probability 0
    # add nothing to the CDF, so they can never be the first to exceed it.
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1)


def _nucleus(probs, top_p):
    """Zero every token outside the smallest most-likely set whose total probability reaches top_p."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    # A token is dropped when the tokens ranked above it already reach top_p; the top token always stays.
    drop_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs >= top_p
    drop = np.empty_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    kept = np.where(drop, 0.0, probs)
    return kept / kept.sum(axis=-1, keepdims=True)


def generate_stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
    """Yield max_new_tokens new ids (B,), one step at a time, continuing idx (B, T).

    Each step conditions on the last block_size tokens. While the window has room a step costs one position.
    Once the cache holds block_size positions the window moves on: with learned positions every position
    embedding shifts, and the cache is rebuilt from the last block_size tokens (the same result as cropping
    the context, as nanoGPT does); with rotary positions the cache slides and a step still costs one position
    (KVCache). A recurrent model's state never fills: each step costs one position. Dropout is off while
    generating; the model's mode is restored after."""
    context = model._check_ids(idx)
    if context.shape[1] == 0:
        raise ValueError("generate needs at least one token of context")
    block_size = model.config.block_size
    rng = np.random.default_rng(seed)
    cache = model.new_cache(context.shape[0])  # a KVCache for the GPT, each layer's (h, c) for an LSTM
    # Not `with model.evaluating()`: its no_grad would stay on in the caller between the tokens this generator
    # yields. Eval mode spans the generation; no_grad is taken per forward, in next_logits.
    was_training = model.training
    model.eval()
    try:
        logits = next_logits(model, context[:, -block_size:], cache)
        for step in range(max_new_tokens):
            token = sample_next_token(logits, rng, temperature, top_k, top_p)
            yield token
            if step + 1 == max_new_tokens:
                break
            context = np.concatenate([context[:, -block_size:], token[:, None]], axis=1)
            if not cache.full:
                logits = next_logits(model, context[:, -1:], cache)
            else:
                cache.clear()
                logits = next_logits(model, context[:, -block_size:], cache)
    finally:
        model.train(was_training)


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
    """idx (B, T) -> (B, T + max_new_tokens): idx followed by sampled ids. See generate_stream."""
    idx = model._check_ids(idx)
    new = list(generate_stream(model, idx, max_new_tokens, temperature, top_k, top_p, seed))
    return np.concatenate([idx] + [token[:, None] for token in new], axis=1).astype(idx.dtype)


def stream_text(model, tok, prompt, max_new_tokens, temperature=0.8, top_k=None, top_p=None, seed=None,
                stop_id=None):
    """Yield the text that follows `prompt`, a piece per generated token (one sample, B = 1).

    Bytes are decoded incrementally, so a character split over several byte-level BPE tokens is yielded
    once it is complete. Generation ends early, yielding nothing for it, at the token `stop_id` (an
    end-of-response marker, see gpt/finetune/instruction_data.py)."""
    ids = tok.encode(prompt) if prompt else [0]  # without a prompt, start from token 0 (as nanoGPT)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    context = np.asarray([ids], dtype=np.int64)
    for token in generate_stream(model, context, max_new_tokens, temperature, top_k, top_p, seed):
        if int(token[0]) == stop_id:
            break
        piece = decoder.decode(_token_bytes(tok, int(token[0])))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _token_bytes(tok, token):
    if hasattr(tok, "decode_bytes"):  # byte-level BPE: a token may hold part of a character
        return tok.decode_bytes([token])
    return tok.decode([token]).encode("utf-8")
