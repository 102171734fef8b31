"""deepmd_md: deep potentials written once (array API), trained on any framework, run in MD engines."""

__version__ = "0.1.0"
