"""The TensorFlow adapter against the NumPy reference (the shared BackendMixin, every descriptor)."""

from __future__ import annotations

import pytest
from mixins import BackendMixin

from deepmd_md.model.frames import prepare_frames

pytest.importorskip("tensorflow")


class TestTensorFlow(BackendMixin):
    @pytest.fixture(autouse=True)
    def _adapter(self):
        from deepmd_md.backends.tensorflow import adapter

        self.adapter = adapter

    def evaluate(self, data, coord, atype, box):
        ad = self.adapter
        prep = prepare_frames(data["config"], coord, atype, box)
        return ad.evaluate(data["config"], ad.asarray(data["params"]), ad.asarray(data["buffers"]),
                           coord, prep)

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        ad = self.adapter
        return ad.evaluate_lower(data["config"], ad.asarray(data["params"]),
                                 ad.asarray(data["buffers"]), ext_coord, ext_atype, nlist,
                                 mapping=mapping)


def test_import_isolation():
    """Importing the TensorFlow backend (adapter and freezer) imports neither torch nor paddle."""
    import subprocess
    import sys

    code = ("import sys, deepmd_md.backends.tensorflow.adapter, deepmd_md.backends.tensorflow.freeze;"
            "bad = [m for m in ('torch', 'paddle') if m in sys.modules]; print(bad);"
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
