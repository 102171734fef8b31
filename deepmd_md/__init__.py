"""deepmd_md: deep potentials written once (array API), trained on any framework, run in MD engines."""

from deepmd_md import mkl_cpu as _mkl_cpu

__version__ = "0.1.0"

# before any framework import: MKL's BLAS kernels on AMD CPUs (deepmd_md/mkl_cpu.py)
_mkl_cpu.load()
