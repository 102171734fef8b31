"""Bad input to test -d, model-devi, change-bias and plot: exit 1, one line `dpmd: error: ...`
that names the problem, no traceback, and no file left behind (each case runs `dpmd` as a
separate process in its own folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import ORTHO_BOX, dpmd_argv, dpmd_env, tree_files, write_system

LCURVE = "#  step  rmse_trn  rmse_e_trn  lr\n      0  1.0e+00  1.0e-01  1.0e-03\n"


def _sys(d, name="sys", nf=2, **kw):
    coord = np.random.default_rng(0).uniform(0, 5, (nf, 4, 3))
    kw.setdefault("energy", np.zeros(nf))
    return write_system(d / name, coord, [0, 1, 0, 1], np.tile(ORTHO_BOX, (nf, 1)), **kw)


def _copy(m, d, name=None):
    return shutil.copy(m, d / (name or m.name))


# each case: (folder, models, systems) -> (argv, substrings of the error line)
def case_devi_one_model(d, m, s):
    return ["model-devi", "-m", m["m1.pth"], "-s", s], ["at least two models"]


def case_devi_missing_model(d, m, s):
    return ["model-devi", "-m", m["m1.pth"], "nothere.pth", "-s", s], ["nothere.pth",
                                                                       "not found"]


def case_devi_type_maps_differ(d, m, s):
    return (["model-devi", "-m", m["m1.pth"], m["swapped.pth"], "-s", s],
            ["different type maps", "['O', 'H']", "['H', 'O']"])


def case_devi_missing_system(d, m, s):
    return ["model-devi", "-m", m["m1.pth"], m["m2.pth"], "-s", "nosys"], ["nosys", "not found"]


def case_devi_mismatched_frames(d, m, s):
    p = _sys(d)
    np.save(p / "set.000" / "box.npy", np.tile(ORTHO_BOX, (3, 1)))
    return (["model-devi", "-m", m["m1.pth"], m["m2.pth"], "-s", "sys"],
            ["box.npy", "3 frames but coord.npy has 2"])


def case_devi_zero_frequency(d, m, s):
    return ["model-devi", "-m", m["m1.pth"], m["m2.pth"], "-s", s, "-f", "0"], ["frequency"]


def case_devi_output_folder_missing(d, m, s):
    return (["model-devi", "-m", m["m1.pth"], m["m2.pth"], "-s", s, "-o", "no/dir/md.out"],
            ["no/dir", "does not exist"])


def case_test_detail_unknown_element(d, m, s):
    """The second system fails after the first was evaluated: no detail file at all."""
    _sys(d, "s1")
    _sys(d, "s2", type_map=["O", "C"])
    return (["test", "-m", m["m1.pth"], "-s", "s1", "s2", "-d", "det"],
            ["element 'C' is not in model/type_map"])


def case_bias_missing_model(d, m, s):
    return ["change-bias", "nothere.pth", "-s", s], ["model not found: nothere.pth"]


def case_bias_corrupt_model(d, m, s):
    (d / "bad.pth").write_bytes(np.random.default_rng(1).bytes(2000))
    return ["change-bias", "bad.pth", "-s", s], ["bad.pth"]


def case_bias_missing_system(d, m, s):
    _copy(m["m1.pth"], d)
    return ["change-bias", "m1.pth", "-s", "nosys"], ["nosys", "not found"]


def case_bias_unknown_element(d, m, s):
    _copy(m["m1.pth"], d)
    _sys(d, type_map=["O", "C"])
    return ["change-bias", "m1.pth", "-s", "sys"], ["element 'C'", "type_map"]


def case_bias_no_energy_labels(d, m, s):
    _copy(m["m1.dp"], d)
    _sys(d, energy=None)
    return ["change-bias", "m1.dp", "-s", "sys"], ["no system with energy labels"]


def case_bias_wrong_value_count(d, m, s):
    _copy(m["m1.dp"], d)
    return ["change-bias", "m1.dp", "-b", "1.0"], ["1 values", "2 types"]


def case_bias_unknown_output_format(d, m, s):
    _copy(m["m1.dp"], d)
    return ["change-bias", "m1.dp", "-s", s, "-o", "out.xyz"], ["out.xyz", ".pth, .pt2 or .dp"]


def case_plot_missing_lcurve(d, m, s):
    return ["plot", "lcurve.out"], ["cannot read lcurve.out"]


def case_plot_binary_lcurve(d, m, s):
    (d / "lcurve.out").write_bytes(bytes(range(256)) * 4)
    return ["plot", "lcurve.out"], ["lcurve.out"]


def case_plot_bad_row(d, m, s):
    (d / "lcurve.out").write_text(LCURVE + "    1  1.0e+00  oops  1.0e-03\n")
    return ["plot", "lcurve.out"], ["lcurve.out:3", "not numbers"]


def case_plot_short_row(d, m, s):
    (d / "lcurve.out").write_text(LCURVE + "    1  1.0e+00\n")
    return ["plot", "lcurve.out"], ["lcurve.out:3", "2 values", "4 columns"]


def case_plot_no_header(d, m, s):
    (d / "lcurve.out").write_text("0 1.0 2.0\n")
    return ["plot", "lcurve.out"], ["no `# step ...` header"]


def case_plot_detail_missing(d, m, s):
    return ["plot", "-d", "det"], ["det.e_peratom.out not found", "dpmd test -d det"]


def case_plot_detail_mismatched_frames(d, m, s):
    head = "# s: data_e pred_e\n"
    (d / "det.e_peratom.out").write_text(head + "1 1\n2 2\n3 3\n")
    (d / "det.f.out").write_text("# s: a b c d e f\n" + "1 1 1 1 1 1\n" * 12)
    (d / "det.v_peratom.out").write_text("# s: v\n" + " ".join(["1"] * 18) + "\n")
    return ["plot", "-d", "det"], ["det.v_peratom.out has 1 frames", "has 3"]


def case_plot_bad_size(d, m, s):
    (d / "lcurve.out").write_text(LCURVE)
    return ["plot", "--size", "big"], ["--size big", "WIDTHxHEIGHT"]


def case_plot_without_matplotlib(d, m, s):
    """matplotlib absent (its import fails): the error names the extra to install."""
    (d / "lcurve.out").write_text(LCURVE)
    return ["<no-matplotlib>", "plot"], ["pip install deepmd-md[plot]"]


CASES = {n[5:]: f for n, f in sorted(globals().items()) if n.startswith("case_")}
NO_MPL = ("import sys; sys.modules['matplotlib'] = None; from deepmd_md.cli.main import main; "
          "sys.exit(main(sys.argv[1:]))")


def _run(item):
    name, (d, argv) = item
    before = tree_files(d)
    cmd = ([sys.executable, "-c", NO_MPL, *argv[1:]] if argv[0] == "<no-matplotlib>"
           else dpmd_argv(*argv))
    p = subprocess.run(cmd, cwd=d, env=dpmd_env(), capture_output=True, text=True, timeout=300)
    return name, (p, before, tree_files(d))


@pytest.fixture(scope="module")
def failures(models, systems, tmp_path_factory):
    m = {k: v for k, v in models.items()}
    prepared, expect = {}, {}
    for name, setup in CASES.items():
        d = tmp_path_factory.mktemp(name)
        argv, expect[name] = setup(d, m, str(systems))
        prepared[name] = (d, [str(a) for a in argv])
    models_before = tree_files(next(iter(models.values())).parent)
    with ThreadPoolExecutor(max_workers=3) as pool:
        res = dict(pool.map(_run, prepared.items()))
    assert tree_files(next(iter(models.values())).parent) == models_before
    return {n: (*res[n], expect[n]) for n in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_one_clear_line(failures, case):
    p, before, after, expect = failures[case]
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr + p.stdout
    assert len(lines) == 1 and lines[0].startswith("dpmd: error: "), p.stderr
    for s in expect:
        assert s in lines[0], f"{s!r} not in: {lines[0]}"
    assert after == before, f"left behind: {sorted(after - before)}"
