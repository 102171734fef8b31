"""Every descriptor of tests/tiny (DPA-1/2/3, hybrid) through every way a user reaches a model:
frozen `.pth` / `.dp` files read by DeepPot, the ASE calculator and `dpmd test`; and, for
message-passing descriptors, the one-process ghost exchange (mapping) against the same atoms
computed as a large cluster where every ghost is an independent atom."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, TRICLINIC_BOX, assert_close, make_model, random_frames, tiny_descriptors

from deepmd_md.backends.numpy import reference
from deepmd_md.data.neighbor import extend_coord
from deepmd_md.model.frames import frame_atom_energy, prepare_frames
from deepmd_md.model.model import descriptor_kind, message_passing_of

TINY = tiny_descriptors()
MP = [n for n in TINY if message_passing_of(make_model(desc=TINY[n])["config"])]


def _atom_energies(data, coord, atype, box):
    prep = prepare_frames(data["config"], coord, atype, box)
    return np.asarray(frame_atom_energy(data["config"], data["params"], data["buffers"], coord,
                                        np.zeros((coord.shape[0], 3, 3)), prep))


@pytest.mark.parametrize("name", MP)
def test_mapping_exchange_equals_independent_ghosts(name):
    """Periodic atomic energies (ghost features copied from owners by mapping, between layers)
    == the same atoms inside a non-periodic cluster of all images within the receptive field
    + rcut, where each image computes its own features. A cluster that only covers rcut (what a
    code without message passing would build) gives different energies: the exchange matters."""
    data = make_model(desc=TINY[name])
    cfg = data["config"]
    kind = descriptor_kind(cfg)
    reach = kind.receptive_field(cfg["descriptor"]) + kind.rcut(cfg["descriptor"])
    coord, atype, box = random_frames(10, TRICLINIC_BOX, seed=21, min_dist=0.95)
    periodic = _atom_energies(data, coord, atype, box)
    nloc = coord.shape[1]
    for r, same in ((reach, True), (kind.rcut(cfg["descriptor"]), False)):
        ext, ext_atype, _, _ = extend_coord(coord, atype, box, r)
        cluster = _atom_energies(data, ext, ext_atype, None)[:, :nloc]
        if same:
            assert_close(cluster, periodic, 1e-10, f"{name}: cluster reaching {r:.1f} A")
        else:
            assert np.abs(cluster - periodic).max() > 1e-8, "ghost features must matter"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """name -> {suffix: path} for every tiny descriptor, frozen once per module."""
    pytest.importorskip("torch")
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.serialize import save_dp

    out = {}
    for name, desc in TINY.items():
        d = tmp_path_factory.mktemp(name.replace(":", "_"))
        data = make_model(desc=desc)
        save_dp(data, str(d / "model.dp"))
        freeze_pth(data, str(d / "model.pth"))
        out[name] = (data, {s: str(d / f"model{s}") for s in (".dp", ".pth")})
    return out


@pytest.mark.parametrize("suffix", [".pth", ".dp"])
@pytest.mark.parametrize("name", list(TINY))
def test_deeppot_and_ase_equal_reference(frozen, name, suffix):
    from deepmd_md.infer import DeepPot

    data, files = frozen[name]
    coord, atype, box = random_frames(12, TRICLINIC_BOX, seed=4, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, box)
    e, f, v = DeepPot(files[suffix]).eval(coord.reshape(1, -1), box, atype[0])
    assert_close(e.ravel(), ref["energy"], 1e-10, "energy")
    assert_close(f, ref["force"], 1e-10, "force")
    assert_close(v, ref["virial"], 1e-10, "virial")
    if suffix == ".pth":
        ase = pytest.importorskip("ase")
        from deepmd_md.calculators.ase import DP

        atoms = ase.Atoms("OH" * 6, positions=coord[0], cell=box.reshape(3, 3), pbc=True)
        atoms.calc = DP(files[suffix])
        assert abs(atoms.get_potential_energy() - ref["energy"][0]) < 1e-9
        assert_close(atoms.get_forces()[None], ref["force"], 1e-10, "ase forces")


@pytest.mark.parametrize("name", list(TINY)[:4])
def test_dpmd_test_reads_frozen_model(frozen, name, tmp_path):
    """`dpmd test --json` on a small deepmd/npy system written from the reference's labels:
    zero error, for each frozen format."""
    data, files = frozen[name]
    coord, atype, box = random_frames(12, TRICLINIC_BOX, nf=2, seed=6, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, box)
    s = tmp_path / "sys"
    (s / "set.000").mkdir(parents=True)
    np.savetxt(s / "type.raw", atype[0], fmt="%d")
    (s / "type_map.raw").write_text("O\nH\n")
    for k, v in (("coord", coord.reshape(2, -1)), ("box", box), ("energy", ref["energy"]),
                 ("force", ref["force"].reshape(2, -1))):
        np.save(s / "set.000" / f"{k}.npy", v)
    out = subprocess.run([sys.executable, "-m", "deepmd_md.cli.main", "test", "-m",
                          files[".pth"], "-s", str(s), "--json"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    flat = json.dumps(res)
    assert "rmse" in flat
    vals = [v for k, v in _walk(res) if "rmse" in k]
    assert vals and max(vals) < 1e-8, res


def _walk(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _walk(v, f"{prefix}{k}/")
    elif isinstance(tree, int | float):
        yield prefix, float(tree)


@pytest.mark.parametrize("name", list(TINY))
def test_dpmd_show(frozen, name):
    """`dpmd show` on every descriptor: its own cutoff, sel and nlist kind (no top-level
    rcut/sel keys assumed), and the parameter count."""
    from deepmd_md.model.model import rcut_of, sel_of

    data, files = frozen[name]
    out = subprocess.run([sys.executable, "-m", "deepmd_md.cli.main", "show", files[".dp"]],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    cfg = data["config"]
    assert f"rcut: {rcut_of(cfg)}  sel: {sel_of(cfg)}" in out.stdout
    assert "parameters: " in out.stdout
