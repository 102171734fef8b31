"""`dpmd` end to end, as a user runs it (subprocess).

Bad input: exit code 1, exactly one stderr line `dpmd: error: ...` naming the cause, no
traceback, and nothing new left in the working directory. Happy paths: train -> freeze -> test
-> show, neighbor-stat on the shipped water data, doc-train-input.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    WATER,
    dpmd_argv,
    dpmd_env,
    max_neighbors,
    model_config,
    random_frames,
    run_dpmd,
    teacher_system,
    tiny_descriptors,
    train_input,
    tree_files,
    write_system,
)

from deepmd_md import keys

pytest.importorskip("torch")


def small_system(root: Path, nat=6, nf=3, seed=0, **over) -> Path:
    """A valid random-label system; `over` replaces arrays ({name: array}) after writing."""
    coord, atype, boxes = random_frames(nat, np.diag([5.0, 5.0, 5.0]).ravel(), nf, seed=seed,
                                        min_dist=1.0)
    rng = np.random.default_rng(seed)
    write_system(root, coord, atype[0], boxes, rng.normal(-10, 1, nf),
                 rng.normal(0, 1, (nf, nat, 3)))
    for name, arr in over.items():
        np.save(root / "set.000" / f"{name}.npy", arr)
    return root


def write_input(workdir: Path, systems=("sys",), model=None, **model_over) -> Path:
    """input.json with relative system paths (as users write them) and outputs in workdir."""
    inp = train_input([], workdir, numb_steps=2, model=model)
    inp["training"]["training_data"]["systems"] = list(systems)
    inp["training"]["disp_file"] = "lcurve.out"
    inp["training"]["save_ckpt"] = "model.ckpt"
    for path, value in model_over.items():  # "descriptor/sel": [2, 2]
        node = inp["model"]
        *parents, leaf = path.split("/")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (workdir / "input.json").write_text(json.dumps(inp, indent=1))
    return workdir / "input.json"


# -- failure cases: name -> setup(workdir) returning (argv, [substrings the message must hold])


def _train(d, **sys_over):
    small_system(d / "sys", **sys_over)
    write_input(d)
    return ["train", "input.json"]


def case_missing_type_raw(d):
    argv = _train(d)
    (d / "sys" / "type.raw").unlink()
    return argv, ["type.raw"]


def case_missing_set(d):
    argv = _train(d)
    for f in (d / "sys" / "set.000").iterdir():
        f.unlink()
    (d / "sys" / "set.000").rmdir()
    return argv, ["set."]


def case_energy_frames_disagree(d):
    return _train(d, energy=np.zeros(2)), ["energy.npy", "2", "3"]


def case_box_shape(d):
    return _train(d, box=np.ones((3, 6))), ["box.npy", "6"]


def case_coord_atoms_disagree(d):
    return _train(d, coord=np.ones((3, 7 * 3))), ["coord.npy", "6 atoms"]


def case_nan_coordinates(d):
    argv = _train(d)
    path = d / "sys" / "set.000" / "coord.npy"
    coord = np.load(path)
    coord[1, 4] = np.nan
    np.save(path, coord)
    return argv, ["coord.npy", "frame 1"]


def case_nan_energy_label(d):
    return _train(d, energy=np.array([-10.0, np.nan, -9.0])), ["energy.npy", "frame 1"]


def case_type_beyond_type_map_raw(d):
    argv = _train(d)
    (d / "sys" / "type.raw").write_text("0 1 0 1 2 1\n")
    return argv, ["type 2", "type_map"]


def case_type_beyond_model_type_map(d):
    argv = _train(d)
    (d / "sys" / "type.raw").write_text("0 1 0 1 2 1\n")
    (d / "sys" / "type_map.raw").unlink()
    return argv, ["type 2", "type_map"]


def case_unknown_key(d):
    small_system(d / "sys")
    write_input(d, **{"descriptor/rcut_smoth": 0.5})
    return ["train", "input.json"], ["rcut_smoth", "'rcut_smth'"]


def case_unknown_top_level_key(d):
    small_system(d / "sys")
    inp = d / "input.json"
    write_input(d)
    data = json.loads(inp.read_text())
    data["learnig_rate"] = data.pop("learning_rate")
    inp.write_text(json.dumps(data))
    return ["train", "input.json"], ["learnig_rate", "'learning_rate'"]


def case_unsupported_key(d):
    small_system(d / "sys")
    write_input(d, **{"descriptor/exclude_types": [[0, 1]]})
    return ["train", "input.json"], ["exclude_types", "not supported"]


def case_sel_too_small(d):
    sysdir = small_system(d / "sys", nat=12)
    write_input(d, **{"descriptor/sel": [2, 1]})
    coord = np.load(sysdir / "set.000" / "coord.npy").reshape(3, 12, 3)
    box = np.load(sysdir / "set.000" / "box.npy")
    found = max_neighbors(coord, np.tile(np.arange(12) % 2, (3, 1)), box, 3.5)
    need = [max(s, int(n)) for s, n in zip([2, 1], found, strict=True)]
    assert found[0] > 2
    # the first type whose count exceeds its sel is reported with that count
    return ["train", "input.json"], [f"found {found[0]} neighbors", f"{need}"]


def _tiny(name: str) -> dict:
    import copy

    return copy.deepcopy(tiny_descriptors()[name])


def case_dpa3_a_rcut_beyond_e_rcut(d):
    small_system(d / "sys")
    desc = _tiny("dpa3:default")
    desc["repflow"]["a_rcut"] = desc["repflow"]["e_rcut"] + 0.5
    write_input(d, descriptor=desc)
    return ["train", "input.json"], ["a_rcut", "e_rcut"]


def case_dpa2_unsupported_option(d):
    small_system(d / "sys")
    write_input(d, descriptor={**_tiny("dpa2:small"), "use_econf_tebd": True})
    return ["train", "input.json"], ["use_econf_tebd", "not supported"]


def case_dpa2_sel_too_small(d):
    """A mixed-type list: one count of any type, the advice names the descriptor's own key."""
    sysdir = small_system(d / "sys", nat=12)
    desc = _tiny("dpa2:small")
    desc["repinit"]["nsel"] = desc["repformer"]["nsel"] = desc["repinit"]["three_body_sel"] = 2
    write_input(d, descriptor=desc)
    coord = np.load(sysdir / "set.000" / "coord.npy").reshape(3, 12, 3)
    box = np.load(sysdir / "set.000" / "box.npy")
    rc = desc["repinit"]["rcut"]
    total = int(max_neighbors(coord, np.zeros((3, 12), int), box, rc, ntypes=1)[0])
    assert total > 2
    return ["train", "input.json"], [f"found {total} neighbors (any type)", "repinit/nsel",
                                     f"at least {total}"]


def case_se_atten_sel_too_small(d):
    sysdir = small_system(d / "sys", nat=12)
    write_input(d, descriptor={**_tiny("se_atten:v2"), "sel": 3})
    coord = np.load(sysdir / "set.000" / "coord.npy").reshape(3, 12, 3)
    box = np.load(sysdir / "set.000" / "box.npy")
    total = int(max_neighbors(coord, np.zeros((3, 12), int), box, 3.5, ntypes=1)[0])
    return ["train", "input.json"], [f"found {total} neighbors (any type)", "descriptor/sel",
                                     f"at least {total}"]


def case_test_missing_model(d):
    small_system(d / "sys")
    return ["test", "-m", "nothere.pth", "-s", "sys"], ["nothere.pth", "not found"]


def case_test_corrupt_pth(d):
    small_system(d / "sys")
    (d / "model.pth").write_bytes(np.random.default_rng(0).bytes(3000))
    return ["test", "-m", "model.pth", "-s", "sys"], ["model.pth"]


def case_test_corrupt_dp(d):
    small_system(d / "sys")
    (d / "model.dp").write_bytes(np.random.default_rng(1).bytes(3000))
    return ["test", "-m", "model.dp", "-s", "sys"], ["model.dp"]


def case_show_corrupt_pth(d):
    (d / "model.pth").write_bytes(b"PK\x03\x04" + np.random.default_rng(2).bytes(500))
    return ["show", "model.pth"], ["model.pth"]


def case_freeze_corrupt_checkpoint(d):
    (d / "model.ckpt-5.ckpt").write_bytes(np.random.default_rng(3).bytes(2000))
    (d / "checkpoint").write_text("model.ckpt-5.ckpt\n")
    return ["freeze", "-o", "out.pth"], ["model.ckpt-5.ckpt"]


def case_test_foreign_format(d):
    """A file of a format nobody here writes: the message says what is read instead."""
    small_system(d / "sys")
    (d / "model.onnx").write_bytes(np.random.default_rng(4).bytes(300))
    return ["test", "-m", "model.onnx", "-s", "sys"], ["model.onnx", "not a model format",
                                                        ".pth", ".pt2", ".dp"]


def case_show_torchscript_not_ours(d):
    """A TorchScript file that is not a deepmd_md model (as a DeePMD-kit .pth is)."""
    import torch

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(d / "other.pth"))
    return ["show", "other.pth"], ["other.pth", "not a deepmd_md model"]


def case_freeze_unknown_output(d):
    from deepmd_md.model.model import init_model
    from deepmd_md.serialize import save_dp

    save_dp(init_model(model_config(), 1), str(d / "model.dp"))
    return ["freeze", "-c", "model.dp", "-o", "out.onnx"], ["out.onnx", ".pth, .pt2"]


def case_test_nan_coordinates(d):
    """`dpmd test` on a valid model file (a .dp) but a system with NaN coordinates."""
    from deepmd_md.model.model import init_model
    from deepmd_md.serialize import save_dp

    save_dp(init_model(model_config(), 1), str(d / "model.dp"))
    coord = np.full((3, 18), 1.0)
    coord[2, 0] = np.nan
    small_system(d / "sys", coord=coord)
    return ["test", "-m", "model.dp", "-s", "sys"], ["coord.npy", "frame 2"]


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def _run_case(item):
    name, (d, argv) = item
    before = tree_files(d)
    proc = subprocess.run(dpmd_argv(*argv), cwd=d, env=dpmd_env(), capture_output=True,
                          text=True, timeout=300)
    return name, (proc, before, tree_files(d))


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    """Run every failure case once, a few at a time (each is a separate `dpmd` process)."""
    prepared, expected = {}, {}
    for name, setup in CASES.items():
        d = tmp_path_factory.mktemp(name)
        argv, expect = setup(d)
        prepared[name] = (d, argv)
        expected[name] = expect
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(_run_case, prepared.items()))
    return {n: (*results[n], expected[n]) for n in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_clear_line(failures, case):
    proc, before, after, expect = failures[case]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, f"rc {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{proc.stderr}"
    assert lines[0].startswith("dpmd: error: ")
    for s in expect:
        assert s in lines[0], f"{s!r} not in: {lines[0]}"
    assert after == before, f"left behind: {sorted(after - before)}"


# -- happy paths -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """dpmd train (2 steps) then freeze to .pth and .dp, in a fresh working directory."""
    d = tmp_path_factory.mktemp("happy")
    teacher_system(d / "sys", nat=8, nf=3)
    write_input(d)
    procs = {"train": run_dpmd("train", "input.json", cwd=d)}
    procs["freeze_pth"] = run_dpmd("freeze", "-o", "m.pth", cwd=d)
    procs["freeze_dp"] = run_dpmd("freeze", "-o", "m.dp", cwd=d)
    return d, procs


def test_train_and_freeze(trained):
    d, procs = trained
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {p.stderr}"
        assert "Traceback" not in p.stderr
    assert (d / "checkpoint").read_text().strip() == "model.ckpt-2.ckpt"
    lcurve = (d / "lcurve.out").read_text().splitlines()
    # no validation_data: training columns only (DeePMD-kit's layout)
    assert lcurve[0].split()[1:4] == ["step", "rmse_trn", "rmse_e_trn"]
    assert (d / "m.pth").stat().st_size > 0 and (d / "m.dp").stat().st_size > 0
    assert not list(d.glob(".tmp-*")) and not list(d.glob("*.tmp"))


def _reference_errors(d, nframes):
    """Energy/force RMSE of the trained checkpoint on the first frames, computed here."""
    from deepmd_md.backends.numpy import reference
    from deepmd_md.data.system import load_system
    from deepmd_md.serialize import load_dp

    data = load_dp(str(d / "model.ckpt-2.ckpt"))
    s = load_system(d / "sys")
    out = reference.evaluate(data, s.coord[:nframes], np.tile(s.atype, (nframes, 1)),
                             s.box[:nframes])
    de = out[keys.ENERGY] - s.energy[:nframes]
    df = out[keys.FORCE] - s.force[:nframes]
    return {"energy_rmse": np.sqrt(np.mean(de**2)),
            "energy_rmse_per_atom": np.sqrt(np.mean(de**2)) / s.natoms,
            "force_rmse": np.sqrt(np.mean(df**2))}


def test_dpmd_test_json(trained):
    d, _ = trained
    p = run_dpmd("test", "-m", "m.pth", "-s", "sys", "-n", "2", "--json", cwd=d)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    sysres = result["systems"][0]
    assert sysres["nframes"] == 2
    want = _reference_errors(d, 2)
    for k, v in want.items():
        assert sysres[k] == pytest.approx(v, rel=1e-8), k


def test_dpmd_test_text(trained):
    d, _ = trained
    p = run_dpmd("test", "-m", "m.dp", "-s", "sys", "-n", "2", "--backend", "numpy", cwd=d)
    assert p.returncode == 0, p.stderr
    m = re.search(r"Force\s+RMSE\s*:\s*(\S+)", p.stdout)
    assert m, p.stdout
    assert float(m.group(1)) == pytest.approx(_reference_errors(d, 2)["force_rmse"], rel=1e-5)


def test_dpmd_show(trained):
    from deepmd_md.serialize import load_dp
    from deepmd_md.tree import flatten

    d, _ = trained
    p = run_dpmd("show", "m.pth", cwd=d)
    assert p.returncode == 0, p.stderr
    nparam = sum(np.asarray(v).size for v in flatten(load_dp(str(d / "m.dp"))["params"]).values())
    assert "['O', 'H']" in p.stdout or '["O", "H"]' in p.stdout
    assert re.search(rf"\b{nparam}\b", p.stdout), p.stdout
    assert "se_e2_a" in p.stdout and "3.5" in p.stdout


def test_neighbor_stat_water(tmp_path):
    """Max neighbors per type on all shipped water frames at rcut 6 == a brute-force
    minimum-image count, and within DeePMD-kit's example sel [46, 92]."""
    p = run_dpmd("neighbor-stat", "-s", str(WATER), "-r", "6.0", "-t", "O", "H", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    got = [int(x) for x in re.search(r"max_nbor_size:\s*\[([^\]]*)\]", p.stdout).group(1)
           .replace(",", " ").split()]
    min_dist = float(re.search(r"min_nbor_dist:\s*(\S+)", p.stdout).group(1))
    best, dmin = np.zeros(2, int), np.inf
    for sysdir in sorted(WATER.glob("data_*")):
        atype = np.loadtxt(sysdir / "type.raw", dtype=int)
        for setdir in sorted(sysdir.glob("set.*")):
            coord = np.load(setdir / "coord.npy").reshape(-1, len(atype), 3)
            box = np.load(setdir / "box.npy").reshape(-1, 3, 3)
            for c, b in zip(coord, box, strict=True):
                assert np.allclose(b, np.diag(np.diag(b))) and np.diag(b).min() > 12.0
                diff = c[None, :, :] - c[:, None, :]
                diff -= np.round(diff / np.diag(b)) * np.diag(b)  # minimum image (L > 2 rcut)
                dist = np.linalg.norm(diff, axis=-1)
                np.fill_diagonal(dist, np.inf)
                dmin = min(dmin, dist.min())
                inside = dist < 6.0
                for t in (0, 1):
                    best[t] = max(best[t], int((inside & (atype == t)[None, :]).sum(1).max()))
    assert got == best.tolist()
    assert got[0] <= 46 and got[1] <= 92
    assert min_dist == pytest.approx(dmin, abs=2e-6)


def test_doc_train_input(tmp_path):
    """The reference documents every key the shipped water inputs use."""
    p = run_dpmd("doc-train-input", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    root = Path(__file__).resolve().parents[1] / "examples" / "water"

    def keys_of(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if not k.startswith("_"):
                    yield k
                    yield from keys_of(v)

    for example in ("se_e2_a", "se_e2_r"):
        used = set(keys_of(json.loads((root / example / "input.json").read_text())))
        missing = [k for k in used if k not in p.stdout]
        assert not missing, f"{example}: undocumented keys {missing}"
    assert "not supported yet" in p.stdout


def test_every_option_has_help_and_version():
    """`dpmd -h` lists every command module; each option of each has help text; --version
    prints the package version."""
    import argparse

    from deepmd_md import __version__
    from deepmd_md.cli.main import _parser
    from deepmd_md.cli.registry import command_modules

    parser, runs = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {m.NAME for m in command_modules()} == set(runs)
    missing = [f"{name} {a.option_strings or a.dest}" for name, sp in sub.choices.items()
               for a in sp._actions if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not missing, f"options without help: {missing}"
    r = subprocess.run(dpmd_argv("--version"), capture_output=True, text=True, env=dpmd_env())
    assert r.returncode == 0 and r.stdout.strip() == f"dpmd (deepmd_md) {__version__}"
