"""nanograd: a tensor autograd engine on NumPy, with numba kernels for the hot paths."""
