"""Choosing the next token from the model's logits: temperature, top-k, top-p (nucleus), greedy."""
import numpy as np


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
