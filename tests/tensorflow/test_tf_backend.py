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
