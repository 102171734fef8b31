"""Backend tests written once: every backend must reproduce the NumPy reference.

A backend test class subclasses `BackendMixin` and supplies two hooks:

    evaluate(data, coord [nf, nat, 3], atype [nf, nat], box [nf, 9] | None)
        -> {"energy" [nf], "atom_energy" [nf, nat], "force" [nf, nat, 3], "virial" [nf, 9]}
    evaluate_lower(data, ext_coord [nf, nall, 3], ext_atype [nf, nall], nlist, raw_nlist, mapping)
        -> {"atom_energy" [nf, nloc], "extended_force" [nf, nall, 3]}
       (nlist: the type-blocked list of prepare_frames; raw_nlist: unsorted candidates with
        atoms beyond rcut and -1 padding; a backend uses whichever its forward_lower takes)

The reference (deepmd_md.backends.numpy.reference) differentiates by complex step, so it shares
no autodiff with any backend; fp64 results must agree to 1e-10.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import (
    ORTHO_BOX,
    TRICLINIC_BOX,
    as_float32,
    assert_close,
    make_model,
    random_frames,
    tiny_descriptors,
)

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.model.frames import prepare_frames

FP64_TOL = 1e-10

# name -> (model options, system: (nat, box or None, nf)); frames of one system have
# different cells (see _system), and the reference evaluates frame by frame, so nf = 2 also
# checks that frames of a batch stay independent.
VARIANTS = {
    "se_e2_a": ({}, (12, ORTHO_BOX, 2)),
    "se_e2_a-two_side": ({"type_one_side": False}, (12, ORTHO_BOX, 1)),
    "se_e2_r-two_side": ({"descriptor": "se_e2_r", "type_one_side": False}, (12, ORTHO_BOX, 1)),
    # [2, 4, 8]: every embedding layer doubles (residual with the input repeated); fitting
    # [8, 8]: the second layer has the same-width residual; both with the dt scale
    "resnet_dt-on": ({"resnet_dt": True, "neuron": (2, 4, 8), "fitting_resnet_dt": True},
                     (12, ORTHO_BOX, 1)),
    "triclinic": ({"fitting_resnet_dt": False}, (14, TRICLINIC_BOX, 2)),
    "nopbc": ({"descriptor": "se_e2_r"}, (9, None, 2)),
}
# every tiny descriptor of tests/tiny/*.py (DPA-1/2/3, hybrid): periodic, and one cluster each
for _name, _desc in tiny_descriptors().items():
    VARIANTS[_name] = ({"desc": _desc}, (12, TRICLINIC_BOX, 1))
LOWER_VARIANTS = ["triclinic", "nopbc", *tiny_descriptors()]
# one variant per descriptor family: what a second route of an already-tested backend (its frozen
# file) runs in `make test`; DPMD_MD_FULL_TESTS=1 runs every variant everywhere
FAMILY_VARIANTS = ("se_e2_a", "se_e2_r-two_side", "triclinic", "nopbc", "se_atten:v2",
                   "dpa2:small", "dpa3:default", "hybrid:atten+se_r")
FULL = bool(os.environ.get("DPMD_MD_FULL_TESTS"))


def _system(nat, box, nf, seed=3):
    """Random frames; frame f is scaled by 1 + 0.04 f (coordinates and cell)."""
    coord, atype, boxes = random_frames(nat, box, nf, seed=seed, min_dist=0.95)
    scale = 1.0 + 0.04 * np.arange(nf)
    coord = coord * scale[:, None, None]
    if boxes is not None:
        boxes = boxes * scale[:, None]
    return coord, atype, boxes


def fold(ext_values, mapping, nat):
    """Sum per-extended-atom values onto their owners (independent of the library's folding)."""
    nf = ext_values.shape[0]
    out = np.zeros((nf, nat, *ext_values.shape[2:]))
    for f in range(nf):
        for j, owner in enumerate(mapping[f]):
            out[f, owner] += ext_values[f, j]
    return out


def raw_neighbor_list(ext_coord, nloc, seed=0, extra=5):
    """A raw list: for each local atom EVERY other extended atom (many beyond rcut), shuffled,
    with `extra` -1 slots scattered in."""
    rng = np.random.default_rng(seed)
    nf, nall, _ = ext_coord.shape
    width = nall - 1 + extra
    out = np.full((nf, nloc, width), -1, dtype=np.int64)
    for f in range(nf):
        for i in range(nloc):
            cand = np.array([j for j in range(nall) if j != i] + [-1] * extra)
            out[f, i] = rng.permutation(cand)
    return out


class BackendMixin:
    """Shared tests; subclasses define `evaluate` and `evaluate_lower` (see module doc)."""

    fp32_rtol = 1e-4
    variants: tuple | None = None  # a subset (e.g. FAMILY_VARIANTS) unless DPMD_MD_FULL_TESTS

    def _only(self, variant: str) -> None:
        if self.variants is not None and not FULL and variant not in self.variants:
            pytest.skip("one variant per descriptor family here; DPMD_MD_FULL_TESTS=1 runs all")

    def evaluate(self, data, coord, atype, box) -> dict:  # pragma: no cover - hook
        raise NotImplementedError

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping) -> dict:
        raise NotImplementedError  # pragma: no cover - hook

    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_matches_reference(self, variant):
        self._only(variant)
        opts, (nat, box, nf) = VARIANTS[variant]
        data = make_model(**opts)
        coord, atype, boxes = _system(nat, box, nf)
        ref = reference.evaluate(data, coord, atype, boxes)
        out = self.evaluate(data, coord, atype, boxes)
        # the system must be interacting, or the comparison proves little
        assert np.abs(ref[keys.FORCE]).max() > 1e-3
        for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE, keys.VIRIAL):
            assert_close(out[k], ref[k], FP64_TOL, f"{variant}: {k}")

    @pytest.mark.parametrize("variant", LOWER_VARIANTS)
    def test_forward_lower_folds_to_forward(self, variant):
        """forward_lower on (extended atoms, nlist) + folding ghost forces onto owners ==
        forward (the reference); and sum_j r_j (x) F_j over extended atoms == the virial."""
        self._only(variant)
        opts, (nat, box, nf) = VARIANTS[variant]
        data = make_model(**opts)
        coord, atype, boxes = _system(nat, box, nf)
        fwd = reference.evaluate(data, coord, atype, boxes)
        prep = prepare_frames(data["config"], coord, atype, boxes)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        nloc = coord.shape[1]
        if boxes is not None:  # the ghosts really matter in this test
            assert ext.shape[1] > 2 * nloc
        lo = self.evaluate_lower(data, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST],
                                 raw_neighbor_list(ext, nloc), mapping)
        ef = np.asarray(lo[keys.EXT_FORCE], float)
        assert ef.shape == ext.shape
        assert_close(np.sum(lo[keys.ATOM_ENERGY], -1), fwd[keys.ENERGY], FP64_TOL, "energy")
        assert_close(lo[keys.ATOM_ENERGY], fwd[keys.ATOM_ENERGY], FP64_TOL, "atom_energy")
        assert_close(fold(ef, mapping, nloc), fwd[keys.FORCE], FP64_TOL, "folded force")
        virial = np.einsum("fja,fjb->fab", ext, ef).reshape(nf, 9)
        assert_close(virial, fwd[keys.VIRIAL], FP64_TOL, "sum r x F over extended atoms")
        if boxes is not None:  # ghosts carry force: folding is not a no-op
            assert np.abs(ef[:, nloc:]).max() > 1e-4

    def test_float32_model(self):
        """The fp32 model is within ~1e-4 (relative) of the same weights evaluated in fp64,
        and really runs in fp32 (it is not bit-identical to fp64)."""
        data32 = as_float32(make_model())
        coord, atype, boxes = _system(12, TRICLINIC_BOX, 1)
        ref = reference.evaluate(data32, coord, atype, boxes)  # fp32 weights, fp64 arithmetic
        out = self.evaluate(data32, coord, atype, boxes)
        for k in (keys.ENERGY, keys.FORCE, keys.VIRIAL):
            assert_close(out[k], ref[k], self.fp32_rtol, f"fp32 {k}")
        err = np.abs(np.asarray(out[keys.FORCE], float) - ref[keys.FORCE]).max()
        assert err > 1e-12, "fp32 model gives fp64-exact forces: precision float32 ignored?"


class AdapterBackend(BackendMixin):
    """A backend adapter module (`asarray`, `evaluate`, `evaluate_lower`) on fresh arrays."""

    adapter_name = ""

    @pytest.fixture(autouse=True)
    def _adapter(self):
        import importlib

        pytest.importorskip(self.adapter_name)
        self.adapter = importlib.import_module(f"deepmd_md.backends.{self.adapter_name}.adapter")

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
