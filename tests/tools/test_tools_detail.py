"""`dpmd test -d PREFIX`: DeePMD-kit 3.2's detail files (names, header lines, columns, rows)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tree_files

from deepmd_md.cli.main import main

# The header lines DeePMD-kit 3.2.0 wrote (`dp --pt test -m frozen.pth -f systems -d d`, one
# system with and one without virial labels), with the system path as <sys>. Later systems are
# appended without a header; .s.out holds only frames with virial labels.
_V = ("data_vxx data_vxy data_vxz data_vyx data_vyy data_vyz data_vzx data_vzy data_vzz "
      "pred_vxx pred_vxy pred_vxz pred_vyx pred_vyy pred_vyz pred_vzx pred_vzy pred_vzz")
DEEPMD_HEADERS = {
    "e": "# <sys>: data_e pred_e",
    "e_peratom": "# <sys>: data_e pred_e",
    "f": "# <sys>: data_fx data_fy data_fz pred_fx pred_fy pred_fz",
    "v": "# <sys>: " + _V,
    "v_peratom": "# <sys>: " + _V,
    "s": "# <sys> (eV/Å³): " + _V.replace("_v", "_s"),
}


def _rows(path):
    return np.loadtxt(path, ndmin=2, encoding="utf-8")


@pytest.fixture(scope="module")
def detail(models, systems, tmp_path_factory):
    out = tmp_path_factory.mktemp("detail")
    prefix = out / "det"
    assert main(["test", "-m", str(models["m1.pth"]), "-s", str(systems), "-d", str(prefix),
                 "--json"]) == 0
    return prefix


def test_files_and_headers(detail, systems):
    names = sorted(p.name for p in detail.parent.iterdir())
    assert names == sorted(f"det.{s}.out" for s in DEEPMD_HEADERS)
    for suf, head in DEEPMD_HEADERS.items():
        lines = (detail.parent / f"det.{suf}.out").read_text(encoding="utf-8").splitlines()
        first = str(systems / ("b" if suf == "s" else "a"))  # .s.out starts at b (a: no virial)
        assert lines[0] == head.replace("<sys>", first)
        assert [ln for ln in lines if ln.startswith("#")] == [lines[0]]  # appended: no header
        ncol = len(head.split(":", 1)[1].split())
        assert all(len(ln.split()) == ncol for ln in lines[1:])
        # numpy.savetxt's %.18e, as DeePMD-kit writes
        assert all(len(x.split("e")[0].split(".")[1]) == 18 for x in lines[1].split())


def test_values(detail, systems, models):
    from deepmd_md.data.system import load_system
    from deepmd_md.infer import DeepPot

    dp = DeepPot(str(models["m1.pth"]))
    rows = {s: _rows(f"{detail}.{s}.out") for s in DEEPMD_HEADERS}
    ie = iff = 0
    stress = []
    for name in ("a", "b", "c"):
        s = load_system(systems / name)
        nf, nat = s.nframes, s.natoms
        e, f, v = dp.eval(s.coord.reshape(nf, -1), s.box, s.atype)
        er, fr = rows["e"][ie:ie + nf], rows["f"][iff:iff + nf * nat]
        np.testing.assert_allclose(er, np.stack([s.energy, e[:, 0]], 1), rtol=1e-15, atol=0)
        np.testing.assert_allclose(rows["e_peratom"][ie:ie + nf], er / nat, rtol=1e-15)
        np.testing.assert_allclose(fr, np.concatenate([s.force.reshape(-1, 3),
                                                       f.reshape(-1, 3)], 1), rtol=1e-15)
        lv = np.zeros((nf, 9)) if s.virial is None else s.virial
        np.testing.assert_allclose(rows["v"][ie:ie + nf], np.concatenate([lv, v], 1),
                                   rtol=1e-15, atol=0)
        np.testing.assert_allclose(rows["v_peratom"][ie:ie + nf],
                                   np.concatenate([lv, v], 1) / nat, rtol=1e-15)
        if s.virial is not None and s.box is not None:
            vol = np.abs(np.linalg.det(s.box.reshape(nf, 3, 3)))[:, None]
            stress.append(-np.concatenate([lv, v], 1) / vol)
        ie, iff = ie + nf, iff + nf * nat
    assert len(rows["e"]) == ie and len(rows["f"]) == iff
    np.testing.assert_allclose(rows["s"], np.concatenate(stress), rtol=1e-14)


def test_numb_test_and_summary_agree(models, systems, tmp_path, capsys):
    """-n 1: one frame per system; the RMSEs recomputed from the files equal the printed ones."""
    prefix = tmp_path / "one"
    assert main(["test", "-m", str(models["m1.dp"]), "-s", str(systems / "a"),
                 str(systems / "b"), "-n", "1", "-d", str(prefix), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    e, f = _rows(f"{prefix}.e_peratom.out"), _rows(f"{prefix}.f.out")
    assert len(e) == 2 and len(f) == 8 + 7
    w = res["weighted"]
    assert np.sqrt(np.mean(((e[:, 1] - e[:, 0])) ** 2)) == pytest.approx(
        np.sqrt(np.mean([r["energy_rmse_per_atom"] ** 2 for r in res["systems"]])), rel=1e-12)
    assert w["force_rmse"] > 0 and "stress_rmse" in res["systems"][1]


def test_failure_leaves_no_detail_files(models, systems, tmp_path):
    """A system that fails after others were evaluated: error, and no detail file at all."""
    from helpers import write_system

    bad = write_system(tmp_path / "zz_bad", np.zeros((1, 2, 3)), [0, 1], np.eye(3).reshape(1, 9),
                       type_map=["O", "C"])
    before = tree_files(tmp_path)
    rc = main(["test", "-m", str(models["m1.pth"]), "-s", str(systems), str(bad), "-d",
               str(tmp_path / "det")])
    assert rc == 1
    assert tree_files(tmp_path) == before
