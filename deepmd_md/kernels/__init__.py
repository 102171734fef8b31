"""Kernels of compressed models: the NumPy / array-API reference of kernels/ (C++) and the
dispatch the model math calls (tabulate.py)."""
