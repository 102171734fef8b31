"""Framework adapters. Each supplies arrays, autodiff and a freezer; none holds model math."""

BACKENDS = ("numpy", "torch", "jax")
