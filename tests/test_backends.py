"""NumPy reference = PyTorch = JAX = frozen .pth: the BackendMixin tests run once per backend."""

from __future__ import annotations

import os
import tempfile

import pytest
from mixins import AdapterBackend, BackendMixin


class TestTorch(AdapterBackend):
    adapter_name = "torch"


class TestJax(AdapterBackend):
    adapter_name = "jax"


class TestFrozenPth(BackendMixin):
    """The TorchScript file written by freeze_pth, loaded back with torch.jit.load: `forward`
    (its own periodic images and neighbor search) and `forward_lower` on a raw neighbor list."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        pytest.importorskip("torch")
        self.tmp = tmp_path
        self.cache = {}

    def module(self, data):
        import torch

        from deepmd_md.backends.torch.freeze import freeze_pth

        if id(data) not in self.cache:
            path = os.path.join(tempfile.mkdtemp(dir=self.tmp), "model.pth")
            freeze_pth(data, path)
            self.cache[id(data)] = (data, torch.jit.load(path))
        return self.cache[id(data)][1]

    def evaluate(self, data, coord, atype, box):
        import torch

        m = self.module(data)
        out = m.forward(torch.tensor(coord), torch.tensor(atype),
                        None if box is None else torch.tensor(box), None, None, False)
        return {k: v.detach().numpy() for k, v in out.items()}

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        import torch

        m = self.module(data)
        out = m.forward_lower(torch.tensor(ext_coord), torch.tensor(ext_atype),
                              torch.tensor(raw_nlist), torch.tensor(mapping), None, None, False)
        return {k: v.detach().numpy() for k, v in out.items()}

