"""Shared input builders for the kernel tests: random arrays in a chosen dtype and memory layout."""
import numpy as np
from hypothesis import strategies as st

DTYPES = (np.float32, np.float64)
LAYOUTS = ("contiguous", "transposed", "strided")

# float64: the numba kernels reassociate sums and fuse multiply-adds, so they round differently from
# NumPy; those differences are ~n * 1e-16 relative for our n <= 64 terms. 1e-10 is far above that and
# far below any real error. float32: fast_exp is within 8.4e-8 relative (~1.4 ulp) of exp and a sum
# of up to ~100 float32 terms in another order differs by up to ~100 * 6e-8 = 6e-6 relative to the
# largest term, hence 3e-5 relative to the largest output magnitude.
TOLERANCE = {np.float32: 3e-5, np.float64: 1e-10}

dims = st.integers(1, 7)
dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**32 - 1)


def make(rng, shape, dtype, layout="contiguous", scale=1.0):
    """A standard-normal array of `shape` in `dtype`, laid out as a view when layout asks for it:
    'transposed' swaps the last two axes of a contiguous array, 'strided' takes every other element
    of a last axis twice as long."""
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base = rng.standard_normal(shape[:-2] + (shape[-1], shape[-2])) * scale
        return np.swapaxes(base.astype(dtype), -1, -2)
    if layout == "strided" and len(shape) >= 1:
        base = rng.standard_normal(shape[:-1] + (2 * shape[-1],)) * scale
        return base.astype(dtype)[..., ::2]
    return (rng.standard_normal(shape) * scale).astype(dtype)


def assert_close(actual, expected, dtype, condition=1.0):
    """Elementwise |actual - expected| <= tol * condition * max(1, max |expected|), tol from TOLERANCE.

    condition is how much the computation amplifies a rounding difference in its input (1 for
    well-conditioned kernels; see test_layer_norm for one that is not)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    scale = condition * max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[dtype] * scale)
