"""Attention maps: which earlier tokens each position of a prompt attends to, in every layer and head.

    maps = attention_maps(model, idx)                       # (n_layer, n_head, T, T), rows sum to 1
    plot_attention_maps(maps, token_labels(tok, ids), "attn.png")
    python -m gpt.sample --ckpt out/shakespeare/ckpt --prompt "ROMEO: But soft" --attention-png attn.png

The model's fused attention op does not expose its weights, so the forward runs once with the written-out
attention (`CausalSelfAttention.fused = False`), which keeps them in `attn.att`.
"""
import math

import numpy as np

from gpt.storage.figures import pyplot, save_png


def attention_maps(model, idx):
    """Attention weights (n_layer, n_head, T, T) of one prompt idx (1, T): entry [l, h, i, j] is how much
    position i attends to position j in head h of layer l. A prompt longer than block_size is cropped to
    its last block_size tokens (as generation does), so T <= block_size. The model is left as it was."""
    idx = model._check_ids(idx)
    if idx.shape[0] != 1 or idx.shape[1] == 0:
        raise ValueError(f"attention_maps takes one non-empty prompt of shape (1, T), got {idx.shape}")
    idx = idx[:, -model.config.block_size:]
    attns = [block.attn for block in model.transformer.h]
    saved = [(attn.fused, attn.att) for attn in attns]
    try:
        for attn in attns:
            attn.fused = False
        with model.evaluating():  # no dropout on the weights
            model(idx)
        return np.stack([attn.att[0] for attn in attns]).astype(np.float32)  # (n_layer, n_head, T, T)
    finally:
        for attn, (fused, att) in zip(attns, saved):
            attn.fused, attn.att = fused, att


def _visible(text):
    """A token's text as a tick label: whitespace made visible, '$' kept out of matplotlib's math mode."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace(" ", "·")
    return "".join(_char(c) for c in text).replace("$", r"\$") or "∅"


def _char(c):
    if 0xDC80 <= ord(c) <= 0xDCFF:  # a lone byte of a split UTF-8 character (see token_labels)
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c if c.isprintable() else c.encode("unicode_escape").decode("ascii")


def token_labels(tok, ids):
    """Each id's text, readable on an axis. A byte-level BPE piece of a character shows as \\xNN."""
    if hasattr(tok, "decode_bytes"):
        texts = [tok.decode_bytes([i]).decode("utf-8", errors="surrogateescape") for i in ids]
    else:
        texts = [tok.decode([i]) for i in ids]
    return [_visible(t) for t in texts]


def plot_attention_maps(maps, labels, path, title=None):
    """Draw maps (n_layer, n_head, T, T) as a grid of heatmaps (a row per layer, a column per head) on one
    colour scale 0..1, rows = the attending position (query), columns = the attended one (key); write the
    PNG to `path` atomically. labels: the T tokens' texts. Positions a token may not see (later ones) are grey."""
    plt = pyplot()
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[2] != maps.shape[3]:
        raise ValueError(f"maps must be (n_layer, n_head, T, T), got shape {maps.shape}")
    n_layer, n_head, T, _ = maps.shape
    if len(labels) != T:
        raise ValueError(f"{len(labels)} labels for {T} positions")
    # Panel size grows with the prompt; the whole figure stays within ~36 x 36 inches.
    panel = min(max(0.1 * T + 1.0, 1.6), 6.0, 36 / n_head, 36 / n_layer)
    slot = panel * 72 / T  # points per token along an axis
    fontsize = max(5.0, min(10.0, 0.85 * slot))
    step = math.ceil(1.1 * fontsize / slot)  # too tight for every token: label every step-th one
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e4e4e4")
    future = np.triu(np.ones((T, T), dtype=bool), k=1)

    # Axes are not shared: sharing makes tick updates quadratic in the number of panels.
    fig, axes = plt.subplots(n_layer, n_head, figsize=(n_head * panel + 1.6, n_layer * panel + 2.0),
                             squeeze=False, layout="constrained")
    ticks = np.arange(0, T, step)
    tick_labels = [labels[i] for i in ticks]
    short = max(map(len, tick_labels)) <= 2  # characters stay upright; longer tokens are turned sideways
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer, head]
            image = ax.imshow(np.ma.masked_array(maps[layer, head], future), cmap=cmap, vmin=0.0, vmax=1.0,
                              interpolation="nearest")
            # Only the outer panels carry ticks and token labels (thousands of ticks would make drawing slow).
            left, bottom = head == 0, layer == n_layer - 1
            ax.set_xticks(ticks if bottom else [], tick_labels if bottom else [], rotation=0 if short else 90,
                          family="monospace")
            ax.set_yticks(ticks if left else [], tick_labels if left else [], family="monospace")
            ax.tick_params(length=1.5, pad=1, labelsize=fontsize)
            if left:
                ax.set_ylabel(f"layer {layer}", fontsize=10)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=min(0.6, 2 / n_layer + 0.1), aspect=25, label="attention weight")
    fig.supxlabel("attended token (key)", fontsize=10)
    fig.supylabel("attending token (query)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    save_png(fig, path)


def draw_prompt_attention(model, tok, prompt, path, title=None):
    """Encode `prompt` (empty: token 0, as sampling does), compute its attention maps and draw them to `path`."""
    ids = tok.encode(prompt) if prompt else [0]
    ids = ids[-model.config.block_size:]
    maps = attention_maps(model, np.asarray([ids], dtype=np.int64))
    if title is None:
        title = "attention per layer and head: each row spreads weight 1 over the tokens up to its own"
    plot_attention_maps(maps, token_labels(tok, ids), path, title)
    return maps
