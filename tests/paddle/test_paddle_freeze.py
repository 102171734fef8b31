"""The frozen Paddle program (.json + .pdiparams), run by Paddle Inference (the C++ backend's
route), = the NumPy reference for every descriptor (BackendMixin); the file round-trips to the
same ModelData; bad files give one clear error."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from mixins import FAMILY_VARIANTS, BackendMixin

from deepmd_md import keys
from deepmd_md.model.frames import prepare_frames

pytest.importorskip("paddle")


class TestFrozenJson(BackendMixin):
    variants = FAMILY_VARIANTS  # the adapter's tests run them all
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path
        self.cache = {}

    def predictor(self, data):
        from deepmd_md.backends.paddle.freeze import Predictor, freeze_paddle

        if id(data) not in self.cache:
            path = os.path.join(tempfile.mkdtemp(dir=self.tmp), "model.json")
            freeze_paddle(data, path)
            self.cache[id(data)] = (data, Predictor(path))
        return self.cache[id(data)][1]

    def evaluate(self, data, coord, atype, box):
        from deepmd_md.infer.deep_pot import fold_lower

        prep = prepare_frames(data["config"], coord, atype, box)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        lo = self.predictor(data).lower(ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], mapping)
        return fold_lower(lo, ext, mapping, coord.shape[1])

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        return self.predictor(data).lower(ext_coord, ext_atype, raw_nlist, mapping)
