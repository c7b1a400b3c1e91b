"""Building a model draws its initial weights in place, in float32: no float64 temporaries (issue 6: they set
the peak memory of loading GPT-2 small to ~2.3x its weights)."""
import tracemalloc

import numpy as np

from gpt import GPT, GPTConfig
from nanograd import nn


def _peak_bytes(build):
    """Peak bytes NumPy allocated (NumPy reports its buffers to tracemalloc) while build() ran."""
    tracemalloc.start()
    try:
        build()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_layers_allocate_little_more_than_their_weights():
    rng = np.random.default_rng(0)
    weights = (2048 * 512 + 2048) * 4  # float32 Linear(512, 2048) weight and bias
    # A float64 draw cast to float32 would peak at 3x (the draw plus the cast); 1.1x leaves room for
    # Python objects and nothing more.
    assert _peak_bytes(lambda: nn.Linear(512, 2048, rng=rng)) < 1.1 * weights
    assert _peak_bytes(lambda: nn.Embedding(2048, 512, rng=rng)) < 1.1 * 2048 * 512 * 4
    assert nn.Linear(4, 3, dtype=np.float64, rng=rng).weight.dtype == np.float64


def test_gpt_initialisation_draws_in_place():
    model = GPT(GPTConfig(block_size=16, vocab_size=512, n_layer=2, n_head=2, n_embd=128))
    largest = max(p.data.nbytes for p in model.parameters())
    peak = _peak_bytes(lambda: model._init_weights(np.random.default_rng(0)))
    assert peak < 0.05 * largest  # a float64 draw of the largest weight would be 2x it
    assert all(p.dtype == np.float32 for p in model.parameters())
