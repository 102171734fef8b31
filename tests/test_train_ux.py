"""What `dpmd train` tells and writes beside the model (issue 18): TensorBoard event files,
nan for loss terms without labels, lcurve columns, the -l log with the run summary, warnings
before replacing an earlier run's outputs, --init-frz-model, and a run-time warning for every
accepted key that has no effect. Tiny models, 1-12 steps."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    ROOT,
    dpmd_env,
    make_model,
    read_lcurve,
    run_dpmd,
    teacher_system,
    tiny_descriptors,
    train_input,
)

from deepmd_md.config import inert_settings, normalize
from deepmd_md.config.args import ROOT_ARGS
from deepmd_md.errors import ConfigError
from deepmd_md.serialize import load_dp
from deepmd_md.tree import flatten

pytest.importorskip("torch")

from deepmd_md.train.trainer import train  # noqa: E402


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    """Two teacher-labelled systems without virial.npy (train, validation) and a copy of the
    first with virial labels."""
    root = tmp_path_factory.mktemp("ux")
    trn = teacher_system(root / "trn", nat=8, nf=4)
    val = teacher_system(root / "val", nat=8, nf=3, seed=5)
    vir = root / "vir"
    shutil.copytree(trn, vir)
    np.save(vir / "set.000" / "virial.npy", np.random.default_rng(0).normal(0, 1, (4, 9)))
    return {"trn": trn, "val": val, "vir": vir}


def run(inp, backend="torch", **kw):
    return train(normalize(copy.deepcopy(inp)), backend, progress=False, **kw)


def cli_input(d: Path, systems, numb_steps=2, **training) -> Path:
    """input.json in d with outputs relative to d (as users run it)."""
    inp = train_input([systems["trn"]], d, numb_steps=numb_steps, **training)
    inp["training"].update(disp_file="lcurve.out", save_ckpt="model.ckpt")
    (d / "input.json").write_text(json.dumps(inp, indent=1))
    return d / "input.json"


def scalars(logdir: Path) -> dict:
    """tag -> [(step, value)] of the event files in logdir, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir))
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


# -- TensorBoard ------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_the_losses(tmp_path, systems):
    """tensorboard: true writes train/ and validation/ event files whose scalars are the
    lcurve.out numbers (loss = rmse^2; lr the schedule's), read back with TensorBoard."""
    tb = tmp_path / "tb"
    inp = train_input([systems["trn"]], tmp_path, numb_steps=4, validation=[systems["val"]],
                      tensorboard=True, tensorboard_log_dir=str(tb))
    run(inp)
    names, lc = read_lcurve(tmp_path / "lcurve.out")
    col = {n: i for i, n in enumerate(names)}
    trn = scalars(tb / "train")
    assert {"loss", "rmse", "rmse_e", "rmse_f", "lr"} <= set(trn)
    assert [s for s, _ in trn["loss"]] == [0, 2, 3, 4] == list(lc[:, 0])
    for tag in ("rmse", "rmse_e", "rmse_f"):  # lcurve prints 3 digits
        np.testing.assert_allclose([v for _, v in trn[tag]], lc[:, col[f"{tag}_trn"]],
                                   rtol=6e-3, err_msg=tag)
    np.testing.assert_allclose([v for _, v in trn["loss"]],
                               np.array([v for _, v in trn["rmse"]]) ** 2, rtol=1e-6)
    np.testing.assert_allclose([v for _, v in trn["lr"]], [1e-2, 1e-2, 10**-2.5, 10**-2.5],
                               rtol=1e-6)
    val = scalars(tb / "validation")
    for tag in ("rmse", "rmse_e", "rmse_f"):
        np.testing.assert_allclose([v for _, v in val[tag]], lc[:, col[f"{tag}_val"]],
                                   rtol=6e-3, err_msg=tag)


def test_tensorboard_with_jax_needs_no_torch(tmp_path, systems):
    """The JAX backend writes the same event files with TensorBoard's own writer (torch is
    never imported), and its profiler's traces for profiling and enable_profiler."""
    inp = train_input([systems["trn"]], tmp_path, numb_steps=3, tensorboard=True,
                      tensorboard_log_dir=str(tmp_path / "tb"), profiling=True,
                      profiling_file=str(tmp_path / "timeline.json"), enable_profiler=True)
    script = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r})\n"
              "from deepmd_md.config import normalize\n"
              "from deepmd_md.train.trainer import train\n"
              f"train(normalize(json.loads({json.dumps(inp)!r})), 'jax', progress=False)\n"
              "print('torch imported:', 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", script], env=dpmd_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "torch imported: False" in p.stdout
    trn = scalars(tmp_path / "tb" / "train")
    _, lc = read_lcurve(tmp_path / "lcurve.out")
    assert [s for s, _ in trn["loss"]] == [0, 2, 3]
    np.testing.assert_allclose([v for _, v in trn["rmse"]], lc[:, 1], rtol=6e-3)
    assert len(json.loads((tmp_path / "timeline.json").read_text())["traceEvents"]) > 10
    assert list((tmp_path / "tb" / "plugins" / "profile").glob("*/*.xplane.pb"))


# -- lcurve.out: labels and columns -----------------------------------------------------------


def test_absent_labels_nan_and_one_warning(tmp_path, systems):
    """A virial prefactor on data without virial.npy: one warning (stderr and the log), rmse_v
    columns nan (DeePMD-kit's convention, never 0); energy and force still finite."""
    inp = train_input([systems["trn"]], tmp_path, numb_steps=3, validation=[systems["val"]])
    inp["loss"].update(start_pref_v=1.0, limit_pref_v=1.0)
    inp["training"].update(disp_file="lcurve.out", save_ckpt="model.ckpt")
    (tmp_path / "input.json").write_text(json.dumps(inp))
    p = run_dpmd("train", "input.json", "-l", "train.log", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("the virial term") == 1, p.stderr
    assert "no virial.npy" in p.stderr and "nan" in p.stderr
    assert (tmp_path / "train.log").read_text().count("the virial term") == 1
    names, lc = read_lcurve(tmp_path / "lcurve.out")
    col = {n: i for i, n in enumerate(names)}
    assert np.all(np.isnan(lc[:, col["rmse_v_trn"]])) and np.all(np.isnan(lc[:, col["rmse_v_val"]]))
    for c in ("rmse_trn", "rmse_e_trn", "rmse_f_trn", "rmse_val", "rmse_e_val", "rmse_f_val"):
        assert np.all(np.isfinite(lc[:, col[c]])) and np.all(lc[:, col[c]] > 0), c
    assert "nan" in (tmp_path / "lcurve.out").read_text()


def test_virial_labels_present_are_finite(tmp_path, systems, capsys):
    """The same prefactor on data with virial.npy: finite rmse_v, no warning."""
    inp = train_input([systems["vir"]], tmp_path, numb_steps=2)
    inp["loss"].update(start_pref_v=1.0, limit_pref_v=1.0)
    run(inp)
    names, lc = read_lcurve(tmp_path / "lcurve.out")
    v = lc[:, names.index("rmse_v_trn")]
    assert np.all(np.isfinite(v)) and np.all(v > 0)
    assert "virial term" not in capsys.readouterr().err


def test_no_validation_data_no_val_columns(tmp_path, systems):
    """Without validation_data only *_trn columns; with it, *_val columns of other numbers."""
    run(train_input([systems["trn"]], tmp_path, numb_steps=2))
    names, _ = read_lcurve(tmp_path / "lcurve.out")
    assert names == ["step", "rmse_trn", "rmse_e_trn", "rmse_f_trn", "lr"]
    d = tmp_path / "with_val"
    d.mkdir()
    run(train_input([systems["trn"]], d, numb_steps=2, validation=[systems["val"]]))
    names, lc = read_lcurve(d / "lcurve.out")
    assert names == ["step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val",
                     "rmse_f_trn", "lr"]
    assert not np.allclose(lc[:, 3], lc[:, 4])  # validation is its own system


# -- the CLI: -l, summary, reruns, --init-frz-model -------------------------------------------


def test_log_path_holds_the_summary(tmp_path, systems):
    """-l LOG: the start-of-run summary (systems, frames, batch sizes, parameter count, where
    checkpoints and lcurve go) in LOG and on stdout, then the RMSE lines."""
    cli_input(tmp_path, systems, numb_steps=2)
    p = run_dpmd("train", "input.json", "-l", "run.log", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    log = (tmp_path / "run.log").read_text()
    nparam = sum(np.size(v) for v in flatten(load_dp(str(tmp_path / "model.ckpt-2.ckpt"))
                                              ["params"]).values())
    want = ["training data: 1 system, 4 frames", str(systems["trn"]), "8 atoms", "4 frames",
            "batch   1", f"{nparam:,} parameters", "model.ckpt-STEP.ckpt every 2 steps",
            "learning curve lcurve.out", "validation data: none", "log run.log",
            "data statistics (1 system, 4 frames): done in"]
    for w in want:
        assert w in log, f"{w!r} not in the log:\n{log}"
        assert w in p.stdout, f"{w!r} not on stdout:\n{p.stdout}"
    assert "batch       2: trn: rmse = " in log
    assert "training finished; last checkpoint: model.ckpt-2.ckpt" in log


def test_rerun_warns_and_replaces_stale_checkpoints(tmp_path, systems):
    """A second run in the same folder warns before overwriting lcurve.out and says that the
    earlier run's checkpoints go; it removes them at its first checkpoint, so the folder
    holds one run. The first run warns about nothing."""
    cli_input(tmp_path, systems, numb_steps=4, save_freq=2)
    first = run_dpmd("train", "input.json", cwd=tmp_path)
    assert first.returncode == 0 and "WARNING" not in first.stderr, first.stderr
    assert {p.name for p in tmp_path.glob("*.ckpt")} == {"model.ckpt-2.ckpt", "model.ckpt-4.ckpt"}
    old_lcurve = (tmp_path / "lcurve.out").read_text()
    second = run_dpmd("train", "input.json", "--numb-steps", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    err = second.stderr
    assert err.count("lcurve.out of an earlier run is overwritten") == 1, err
    assert "2 checkpoint(s) of an earlier run (model.ckpt-2.ckpt ... model.ckpt-4.ckpt)" in err
    assert {p.name for p in tmp_path.glob("*.ckpt")} == {"model.ckpt-1.ckpt"}
    assert (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-1.ckpt"
    assert (tmp_path / "lcurve.out").read_text() != old_lcurve


@pytest.mark.parametrize("flag", ["--init-frz-model", "--init-model"])
def test_init_from_frozen_pth(tmp_path, flag, systems):
    """--init-frz-model m.pth (and --init-model m.pth): the run starts from the .pth's weights
    (one step at lr 1e-14 leaves them in place); a missing file is one clear line."""
    from deepmd_md.backends.torch.freeze import freeze_pth

    src = make_model(seed=4)
    freeze_pth(src, str(tmp_path / "m.pth"))
    inp = train_input([systems["trn"]], tmp_path, numb_steps=1, model=src["config"])
    inp["learning_rate"].update(start_lr=1e-14, stop_lr=1e-14)
    inp["training"].update(disp_file="lcurve.out", save_ckpt="model.ckpt")
    (tmp_path / "input.json").write_text(json.dumps(inp))
    p = run_dpmd("train", "input.json", flag, "m.pth", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "weights from m.pth" in p.stdout and "differs" not in p.stderr
    got, want = flatten(load_dp(str(tmp_path / "model.ckpt-1.ckpt"))["params"]), flatten(
        src["params"])
    assert sorted(got) == sorted(want)
    assert max(float(np.max(np.abs(got[k] - want[k]))) for k in want) < 1e-9
    bad = run_dpmd("train", "input.json", flag, "missing.pth", cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["dpmd: error: model file not found: missing.pth"]


def test_init_model_other_architecture_warns(tmp_path, systems, capsys):
    """An input whose model section differs from the init model's: one warning naming the
    keys; the file's model is trained (its parameter shapes)."""
    from deepmd_md.serialize import save_dp

    src = make_model(seed=4)
    save_dp(src, str(tmp_path / "m.dp"))
    inp = train_input([systems["trn"]], tmp_path, numb_steps=1, model=src["config"])
    inp["model"]["fitting_net"]["neuron"] = [16, 16]
    last = run(inp, init_model_path=str(tmp_path / "m.dp"))
    err = capsys.readouterr().err
    assert err.count("differs from") == 1 and "model/fitting_net/neuron" in err, err
    got = flatten(load_dp(last)["params"])
    assert {k: v.shape for k, v in got.items()} == {
        k: v.shape for k, v in flatten(src["params"]).items()}


def test_freeze_reports_elapsed_time(tmp_path):
    """dpmd freeze says what it writes before a slow format and how long it took."""
    from deepmd_md.serialize import save_dp

    save_dp(make_model(), str(tmp_path / "m.dp"))
    p = run_dpmd("freeze", "-c", "m.dp", "-o", "m.pth", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("freezing m.dp -> m.pth (") and lines[0].endswith("...")
    assert lines[-1].startswith("frozen m.dp -> m.pth in ") and lines[-1].endswith(" s")


# -- every accepted key acts or warns ---------------------------------------------------------


def _ignored_args(args, variant=None, chain=()):
    """(chain, arg) for every 'ignored' key of the schema; chain: keys, and (flag, choice) pairs
    for variant sub-schemas."""
    if variant is not None:
        for name, sub in variant.choices.items():
            yield from _ignored_args(sub, None, chain + ((variant.flag, name),))
    for a in args:
        if a.status == "ignored":
            yield chain + (a.name,), a
        if callable(a.variant):  # recursive (hybrid): its choices are walked where defined
            continue
        if a.sub is not None or a.variant is not None:
            yield from _ignored_args(a.sub or (), a.variant, chain + (a.name,))


def _other_value(arg):
    if isinstance(arg.default, bool):
        return not arg.default
    if arg.choices:
        return next(c for c in arg.choices if c != arg.default)
    if isinstance(arg.default, int):
        return arg.default + 9
    if arg.default is None and "list[str]" in arg.dtype:
        return ["O", "H"]
    raise AssertionError(f"no test value for {arg.name} ({arg.dtype}); add one")


def _config_with(chain, value, base) -> tuple[dict, str]:
    """A copy of base with the key at chain set (a descriptor of the chain's type swapped in)."""
    cfg = copy.deepcopy(base)
    node, path = cfg, []
    for part in chain[:-1]:
        if isinstance(part, tuple):
            flag, name = part
            if node.get(flag, name) != name:  # another descriptor type: a tiny one of this type
                desc = next(d for d in tiny_descriptors().values() if d["type"] == name)
                node.clear()
                node.update(copy.deepcopy(desc))
            continue
        node = node.setdefault(part, {})
        path.append(part)
    node[chain[-1]] = value
    return cfg, "/".join(path + [chain[-1]])


def test_every_inert_key_is_reported(systems, tmp_path):
    """Each key the schema accepts without effect, set to another value than its default, is
    listed by inert_settings (what the run warns about) under its path."""
    base = train_input([systems["trn"]], tmp_path)
    found = list(_ignored_args(ROOT_ARGS))
    assert len(found) >= 5, found
    for chain, arg in found:
        cfg, path = _config_with(chain, _other_value(arg), base)
        listed = [p for p, _, _ in inert_settings(normalize(cfg))]
        assert listed == [path], (chain, listed)
        assert inert_settings(normalize(_config_with(chain, arg.default, base)[0])) == []


def test_inert_keys_warn_once_at_run_time(tmp_path, systems):
    """A run with inert settings warns once for each, on stderr and in the log."""
    cli_input(tmp_path, systems, numb_steps=2, numb_test=10, tensorboard_freq=5,
              profiling_file="prof.json")
    inp = json.loads((tmp_path / "input.json").read_text())
    inp["learning_rate"]["scale_by_worker"] = "sqrt"
    (tmp_path / "input.json").write_text(json.dumps(inp))
    p = run_dpmd("train", "input.json", "-l", "run.log", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    log = (tmp_path / "run.log").read_text()
    for key in ("'training/numb_test' = 10 has no effect",
                "'learning_rate/scale_by_worker' = 'sqrt' has no effect",
                "'training/tensorboard_freq' has no effect without 'training/tensorboard'",
                "'training/profiling_file' has no effect without 'training/profiling'"):
        assert p.stderr.count(key) == 1, (key, p.stderr)
        assert log.count(key) == 1, (key, log)
    assert not (tmp_path / "prof.json").exists() and not (tmp_path / "log").exists()


def test_profiling_writes_traces(tmp_path, systems):
    """profiling: a Chrome trace in profiling_file; enable_profiler: the profiler's trace in
    tensorboard_log_dir."""
    inp = train_input([systems["trn"]], tmp_path, numb_steps=4, profiling=True,
                      profiling_file=str(tmp_path / "timeline.json"), enable_profiler=True,
                      tensorboard_log_dir=str(tmp_path / "prof"))
    run(inp)
    trace = json.loads((tmp_path / "timeline.json").read_text())
    assert len(trace["traceEvents"]) > 10
    assert list((tmp_path / "prof").glob("*.pt.trace.json"))


def test_disp_and_time_training(tmp_path, systems, capsys):
    """disp_training/time_training true (defaults): RMSE lines with timings and the mean step
    time; false: neither (lcurve.out is still written)."""
    run(train_input([systems["trn"]], tmp_path, numb_steps=12, disp_freq=4))
    out = capsys.readouterr().out
    assert out.count(": trn: rmse = ") == 4 and "step(s) in" in out
    assert "average training time:" in out
    d = tmp_path / "quiet"
    d.mkdir()
    run(train_input([systems["trn"]], d, numb_steps=12, disp_freq=4, disp_training=False,
                    time_training=False))
    out = capsys.readouterr().out
    assert ": trn: rmse" not in out and "average training time" not in out
    assert read_lcurve(d / "lcurve.out")[1].shape[0] == 4


def test_stat_file_cached_and_checked(tmp_path, systems, capsys):
    """stat_file: written by the first run, read by the next (same statistics), refused for a
    model it was not computed for."""
    sf = tmp_path / "stat.npz"
    inp = train_input([systems["trn"]], tmp_path, numb_steps=1, stat_file=str(sf))
    first = load_dp(run(inp))["buffers"]
    assert sf.is_file() and "data statistics saved to" in capsys.readouterr().out
    second = load_dp(run(inp))["buffers"]
    assert "data statistics read from" in capsys.readouterr().out
    for k, v in flatten(first).items():
        np.testing.assert_array_equal(flatten(second)[k], v)
    inp["model"]["descriptor"]["rcut"] = 3.4
    with pytest.raises(ConfigError, match="differs in: descriptor"):
        run(inp)
