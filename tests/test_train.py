"""Training: the loss goes down, restart == uninterrupted run, checkpoints are atomic and
rotated, a non-periodic system trains, torch and jax take the same steps."""

from __future__ import annotations

import copy
import shutil

import h5py
import numpy as np
import pytest
from helpers import (
    make_model,
    model_config,
    read_lcurve,
    teacher_system,
    tiny_descriptors,
    train_input,
)

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.config import normalize
from deepmd_md.data.system import load_system
from deepmd_md.serialize import load_dp, save_dp
from deepmd_md.tree import flatten

pytest.importorskip("torch")

from deepmd_md.train.trainer import train  # noqa: E402

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """8 atoms, 4 frames, labelled by a random teacher model (learnable by construction)."""
    return teacher_system(tmp_path_factory.mktemp("teacher") / "sys", nat=8, nf=4)


@pytest.fixture(scope="module")
def teacher_nopbc(tmp_path_factory):
    return teacher_system(tmp_path_factory.mktemp("teacher_nopbc") / "sys", nat=7, nf=3,
                          nopbc=True)


def rmse(data, system_path):
    """(energy RMSE per atom, force RMSE) of a model on every frame of a system (reference)."""
    s = load_system(system_path)
    atype = np.tile(s.atype, (s.nframes, 1))
    out = reference.evaluate(data, s.coord, atype, s.box)
    de = (out[keys.ENERGY] - s.energy) / s.natoms
    return float(np.sqrt(np.mean(de**2))), float(np.sqrt(np.mean((out[keys.FORCE] - s.force)**2)))


def params_of(path) -> dict:
    return flatten(load_dp(str(path))["params"])


def assert_params_equal(a: dict, b: dict, tol: float = 0.0):
    assert sorted(a) == sorted(b)
    for k in a:
        err = np.max(np.abs(np.asarray(a[k], float) - np.asarray(b[k], float)))
        assert err <= tol, f"{k}: {err:.3e}"


def run(inp, backend="torch", **kw):
    return train(normalize(copy.deepcopy(inp)), backend, progress=False, **kw)


def start_model(tmp_path, seed=3):
    """A known initial model written to .dp (training starts from it via init_model_path)."""
    data = make_model(seed=seed)
    path = tmp_path / "init.dp"
    save_dp(data, str(path))
    return data, path


def test_training_reduces_the_loss(tmp_path, teacher):
    """60 full-batch steps at a constant lr 1e-2 (so the loss prefactors do not move): the loss
    falls well below the start, and the lcurve's first line is the initial model's error."""
    init, init_path = start_model(tmp_path)
    inp = train_input([teacher], tmp_path, numb_steps=60, save_freq=60)
    inp["model"] = copy.deepcopy(init["config"])
    inp["learning_rate"].update(start_lr=1e-2, stop_lr=1e-2, decay_steps=1000)
    inp["training"]["training_data"]["batch_size"] = 4  # every frame, every step
    last = run(inp, init_model_path=str(init_path))
    names, lc = read_lcurve(tmp_path / "lcurve.out")
    col = {n: i for i, n in enumerate(names)}
    assert lc[-1, 0] == 60 and np.all(lc[:, col["lr"]] == 1e-2)
    e0, f0 = rmse(init, teacher)
    assert lc[0, col["rmse_e_trn"]] == pytest.approx(e0, rel=6e-3)
    assert lc[0, col["rmse_f_trn"]] == pytest.approx(f0, rel=6e-3)
    first, final = lc[0, col["rmse_trn"]], lc[-1, col["rmse_trn"]]
    assert final < 0.5 * first, f"rmse_trn {first} -> {final}"
    assert lc[-1, col["rmse_f_trn"]] < 0.5 * lc[0, col["rmse_f_trn"]]
    # independently: the saved model is much better than the initial one on the data
    trained = load_dp(last)
    e1, f1 = rmse(trained, teacher)
    assert f1 < 0.5 * f0 and e1 < e0, (e0, f0, e1, f1)  # pref_e 0.02 vs pref_f 1000: E slower


@pytest.mark.parametrize("mode", ["decaying-lr", "separate-run"])
def test_restart_equals_uninterrupted(tmp_path, teacher, mode):
    """2N steps in one go == N steps, then --restart from the step-N checkpoint to 2N: same
    lcurve lines after N, same parameters and Adam moments (random batches and validation
    batches included, so the sampler state must be restored too).

    decaying-lr: the restart starts from the uninterrupted run's own step-N checkpoint (lr
    decays every 2 steps, so the step offset must be right). separate-run: a separate run of
    N steps (numb_steps N; constant lr so that its schedule equals the long run's), restarted."""
    n = 3
    ref_dir, a_dir, b_dir = (tmp_path / d for d in ("full", "first", "restart"))
    for d in (ref_dir, a_dir, b_dir):
        d.mkdir()

    def inp_for(d, steps):
        inp = train_input([teacher], d, numb_steps=steps, save_freq=n, validation=[teacher])
        if mode == "separate-run":
            inp["learning_rate"].update(stop_lr=inp["learning_rate"]["start_lr"])  # constant
        return inp

    run(inp_for(ref_dir, 2 * n))
    if mode == "decaying-lr":
        ckpt = a_dir / "model.ckpt-3.ckpt"
        shutil.copy(ref_dir / "model.ckpt-3.ckpt", ckpt)
    else:
        ckpt = run(inp_for(a_dir, n))
        assert_params_equal(params_of(ckpt), params_of(ref_dir / "model.ckpt-3.ckpt"))
    last = run(inp_for(b_dir, 2 * n), restart=str(ckpt))

    _, full = read_lcurve(ref_dir / "lcurve.out")
    _, resumed = read_lcurve(b_dir / "lcurve.out")
    after = full[full[:, 0] > n]
    assert after.shape[0] == n
    assert resumed.shape == after.shape and np.array_equal(resumed, after)
    if mode == "decaying-lr":
        assert len(set(after[:, -1])) > 1, "lr should decay during the resumed part"
    pa, pb = params_of(ref_dir / f"model.ckpt-{2 * n}.ckpt"), params_of(last)
    assert_params_equal(pa, pb)
    # and training did move the parameters between N and 2N
    pmid = params_of(ref_dir / "model.ckpt-3.ckpt")
    assert max(np.abs(pa[k] - pmid[k]).max() for k in pa) > 1e-6
    _, ta, xa = load_dp(str(ref_dir / f"model.ckpt-{2 * n}.ckpt"), with_extra=True)
    _, tb, xb = load_dp(last, with_extra=True)
    for tree in ("opt_m", "opt_v"):
        assert_params_equal(flatten(ta[tree]), flatten(tb[tree]))
    assert xa["step"] == xb["step"] == 2 * n


def _dataset_kinds(f: h5py.File) -> set[str]:
    kinds: set[str] = set()
    f.visititems(lambda _, o: kinds.add(o.dtype.kind) if isinstance(o, h5py.Dataset) else None)
    return kinds


def test_checkpoints_rotated_and_pointer(tmp_path, teacher):
    inp = train_input([teacher], tmp_path, numb_steps=5, save_freq=1, max_ckpt_keep=2)
    last = run(inp)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint", "lcurve.out", "model.ckpt-4.ckpt", "model.ckpt-5.ckpt"]
    assert (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-5.ckpt"
    assert last.endswith("model.ckpt-5.ckpt")
    for step in (4, 5):
        path = tmp_path / f"model.ckpt-{step}.ckpt"
        assert path.read_bytes()[:8] == HDF5_MAGIC  # HDF5, not a pickle
        _, trees, extra = load_dp(str(path), with_extra=True)
        assert extra["step"] == step and {"opt_m", "opt_v"} <= set(trees)
        with h5py.File(path, "r") as f:  # only numeric arrays inside: nothing to unpickle
            kinds = _dataset_kinds(f)
        assert kinds <= set("fiub"), kinds
    p4, p5 = params_of(tmp_path / "model.ckpt-4.ckpt"), params_of(last)
    assert max(np.abs(p4[k] - p5[k]).max() for k in p4) > 0, "step 5 changed nothing"


def test_checkpoint_write_is_atomic(tmp_path):
    """A write that fails half-way leaves the previous file intact and no temporary file."""
    data = make_model()
    path = tmp_path / "model.ckpt-1.ckpt"
    save_dp(data, str(path))
    before = path.read_bytes()
    bad = {"ok": {"a": np.zeros(1000)}, "bad": {"x": np.array([object()], dtype=object)}}
    with pytest.raises(TypeError):
        save_dp(make_model(seed=5), str(path), extra_trees=bad)
    with pytest.raises(TypeError):
        save_dp(make_model(seed=5), str(tmp_path / "new.ckpt"), extra_trees=bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt-1.ckpt"]


def test_non_periodic_system_trains(tmp_path, teacher_nopbc):
    """A `nopbc` system (no box.npy) trains; the lcurve's first line is the initial model's
    error computed without any periodic image; the parameters move."""
    assert (teacher_nopbc / "nopbc").exists()
    assert not (teacher_nopbc / "set.000" / "box.npy").exists()
    init, init_path = start_model(tmp_path)
    inp = train_input([teacher_nopbc], tmp_path, numb_steps=4)
    inp["model"] = copy.deepcopy(init["config"])
    inp["training"]["training_data"]["batch_size"] = 3
    last = run(inp, init_model_path=str(init_path))
    names, lc = read_lcurve(tmp_path / "lcurve.out")
    col = {n: i for i, n in enumerate(names)}
    assert np.all(np.isfinite(lc))
    e0, f0 = rmse(init, teacher_nopbc)
    assert lc[0, col["rmse_e_trn"]] == pytest.approx(e0, rel=6e-3)
    assert lc[0, col["rmse_f_trn"]] == pytest.approx(f0, rel=6e-3)
    moved = max(np.abs(v - flatten(init["params"])[k]).max()
                for k, v in params_of(last).items())
    assert moved > 1e-4


# one tiny variant per descriptor family: a jit compile per variant is the cost here
_ONE_PER_FAMILY = list({n.split(":")[0]: n for n in reversed(list(tiny_descriptors()))}.values())


@pytest.mark.parametrize("descr", ["se_e2_a", *_ONE_PER_FAMILY])
def test_torch_and_jax_take_the_same_steps(tmp_path, teacher, descr):
    """Same init, same batches: same first-step loss metrics and same parameters after two
    Adam steps (the optimizer and loss are shared code), to 1e-10; for every descriptor."""
    pytest.importorskip("jax")
    from deepmd_md.backends.jax import adapter as jax_ad
    from deepmd_md.backends.torch import adapter as torch_ad
    from deepmd_md.train.loss import prefactors
    from deepmd_md.train.optim import adam_init
    from deepmd_md.train.prepared import PreparedData

    init = (make_model(seed=4) if descr == "se_e2_a"
            else make_model(desc=tiny_descriptors()[descr], seed=4))
    cfg = normalize(train_input([teacher], tmp_path))
    prepared = PreparedData(init["config"], [str(teacher)], 2)
    rng = np.random.default_rng(0)
    batches = [prepared.sample(rng) for _ in range(2)]
    results = {}
    for ad in (torch_ad, jax_ad):
        tr = ad.Trainer(init["config"], init["params"], init["buffers"])
        opt = adam_init(tr.params)
        metrics = []
        for i, (batch, prep) in enumerate(batches):
            lr = 1e-2 * 0.5**i
            pref = prefactors(cfg["loss"], lr, 1e-2)
            opt, m = tr.step(batch, prep, pref, opt, lr)
            metrics.append(m)
        results[ad.name] = (metrics, flatten(tr.params_numpy()))
    (mt, pt), (mj, pj) = results["torch"], results["jax"]
    for a, b in zip(mt, mj, strict=True):
        for k in ("rmse_e", "rmse_f"):
            assert a[k] == pytest.approx(b[k], rel=1e-10, abs=1e-14), k
    assert_params_equal(pt, pj, tol=1e-10)
    # the first-step metrics are the initial model's errors on that batch (reference)
    batch, _ = batches[0]
    s = load_system(teacher)
    fr = batch["frame_index"]
    ref = reference.evaluate(init, s.coord[fr], np.tile(s.atype, (len(fr), 1)), s.box[fr])
    assert mt[0]["rmse_f"] == pytest.approx(np.sqrt(np.mean((ref[keys.FORCE]
                                                             - s.force[fr])**2)), rel=1e-10)
    moved = max(np.abs(pt[k] - flatten(init["params"])[k]).max() for k in pt)
    assert moved > 1e-4


# -- documented keys that change the result must not be silently ignored -------------------------


def test_decay_steps_beyond_numb_steps_still_decays():
    """DeePMD-kit replaces a decay_steps >= numb_steps (which would never decay) by
    numb_steps // 100 + 1 (or 100): the lr still reaches stop_lr at numb_steps."""
    from deepmd_md.train.loss import exp_lr

    inp = train_input(["unused"], ".", numb_steps=1000)
    inp["learning_rate"].update(start_lr=1e-3, stop_lr=3.51e-8, decay_steps=5000)
    lr = exp_lr(normalize(inp)["learning_rate"], 1000)
    assert lr(10) == 1e-3 and lr(11) < 1e-3  # 1000 // 100 + 1 = 11 steps per decay
    assert 3.51e-8 <= lr(1000) < 3.51e-8 / lr(11) * lr(0)  # within one decay of stop_lr


def test_decay_rate_is_honoured():
    """DeePMD-kit: lr(t) = start_lr * decay_rate^(t // decay_steps) when decay_rate is given."""
    from deepmd_md.train.loss import exp_lr

    inp = train_input(["unused"], ".", numb_steps=4)
    inp["learning_rate"].update(start_lr=1e-2, stop_lr=1e-8, decay_steps=1, decay_rate=0.5)
    lr = exp_lr(normalize(inp)["learning_rate"], 4)
    assert [lr(t) for t in range(4)] == pytest.approx([1e-2 * 0.5**t for t in range(4)])


def test_descriptor_trainable_false_freezes_embedding(tmp_path, teacher):
    inp = train_input([teacher], tmp_path, numb_steps=2)
    inp["model"]["descriptor"]["trainable"] = False
    init = make_model(seed=3)
    init["config"]["descriptor"]["trainable"] = False
    init_path = tmp_path / "init.dp"
    save_dp(init, str(init_path))
    inp["model"] = copy.deepcopy(init["config"])
    last = run(inp, init_model_path=str(init_path))
    after = params_of(last)
    before = flatten(init["params"])
    desc = [k for k in before if k.startswith("descriptor/")]
    fit = [k for k in before if k.startswith("fitting/")]
    assert max(np.abs(after[k] - before[k]).max() for k in fit) > 1e-6  # fitting trains
    assert all(np.array_equal(after[k], before[k]) for k in desc), "embedding nets changed"


@pytest.mark.parametrize("descr", list(tiny_descriptors()))
def test_every_descriptor_trains_from_data(tmp_path, teacher, descr):
    """`dpmd train`'s path for each descriptor: statistics from the data (not the fresh
    model's, every std positive), 3 steps with a finite learning curve, a checkpoint."""
    inp = train_input([teacher], tmp_path, numb_steps=3, save_freq=3,
                      model=model_config(desc=tiny_descriptors()[descr]))
    last = run(inp)
    data = load_dp(last)
    stats = flatten(data["buffers"]["descriptor"])
    assert stats and all(np.all(v > 0) for k, v in stats.items() if k.endswith("dstd"))
    # the statistics are the data's, as compute_stats gives them on the same systems
    from deepmd_md.train.prepared import PreparedData, compute_stats

    want = compute_stats(data["config"], PreparedData(data["config"], [str(teacher)], 1))
    for k, v in flatten(want["descriptor"]).items():
        np.testing.assert_allclose(stats[k], v, rtol=1e-12, err_msg=k)
    _, lc = read_lcurve(tmp_path / "lcurve.out")
    assert lc.shape[0] >= 2 and np.all(np.isfinite(lc))

