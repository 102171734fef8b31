"""The TensorFlow adapter against the NumPy reference (the shared BackendMixin, every descriptor)."""

from __future__ import annotations

import pytest
from mixins import AdapterBackend

pytest.importorskip("tensorflow")


class TestTensorFlow(AdapterBackend):
    adapter_name = "tensorflow"


def test_import_isolation():
    """Importing the TensorFlow backend (adapter and freezer) imports neither torch nor paddle."""
    import subprocess
    import sys

    code = ("import sys, deepmd_md.backends.tensorflow.adapter, deepmd_md.backends.tensorflow.freeze;"
            "bad = [m for m in ('torch', 'paddle') if m in sys.modules]; print(bad);"
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
