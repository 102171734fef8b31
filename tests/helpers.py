"""Shared helpers of the model, backend, freeze, training, CLI and inference tests.

Importable as `from helpers import ...`; tests/conftest.py puts this folder and the repo root on
sys.path, so the tests run whether or not deepmd_md is pip-installed.

Conventions: models are tiny (embedding [4, 8], axis_neuron 4, fitting [8, 8]), float64 unless a
test says otherwise, with random non-trivial statistics (davg, dstd, bias) so the normalisation
is exercised; systems are 6-20 atoms in small boxes with rcut 3.5.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for _p in (str(ROOT), str(TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("OMP_NUM_THREADS", "1")

WATER = ROOT / "examples" / "water" / "data"
TYPE_MAP = ["O", "H"]
RCUT, RCUT_SMTH = 3.5, 1.0
SEL = [16, 16]

# box rows are cell vectors
ORTHO_BOX = np.diag([6.0, 5.6, 5.8]).ravel()
TRICLINIC_BOX = np.array([[6.2, 0.0, 0.0], [1.3, 5.7, 0.0], [-0.9, 1.1, 5.9]]).ravel()


# -- models ------------------------------------------------------------------------------------


def model_config(descriptor: str = "se_e2_a", *, type_one_side: bool = True,
                 resnet_dt: bool = False, neuron=(4, 8), fitting=(8, 8),
                 fitting_resnet_dt: bool = True, precision: str = "float64",
                 activation: str = "tanh", rcut: float = RCUT, rcut_smth: float = RCUT_SMTH,
                 sel=SEL, seed: int = 1, desc: dict | None = None) -> dict:
    """A complete (normalised-form) `model` section of a tiny model; `desc`: a whole descriptor
    section instead (e.g. one of tiny_descriptors())."""
    if desc is not None:
        return {"type_map": list(TYPE_MAP), "descriptor": normalized_descriptor(desc),
                "fitting_net": {"neuron": list(fitting), "resnet_dt": fitting_resnet_dt,
                                "activation_function": activation, "precision": precision,
                                "seed": seed}}
    desc = {"type": descriptor, "sel": list(sel), "rcut": rcut, "rcut_smth": rcut_smth,
            "neuron": list(neuron), "resnet_dt": resnet_dt, "type_one_side": type_one_side,
            "activation_function": activation, "precision": precision, "seed": seed}
    if descriptor == "se_e2_a":
        desc["axis_neuron"] = 4
    return {"type_map": list(TYPE_MAP), "descriptor": desc,
            "fitting_net": {"neuron": list(fitting), "resnet_dt": fitting_resnet_dt,
                            "activation_function": activation, "precision": precision,
                            "seed": seed}}


def random_stats(data: dict, seed: int = 0) -> dict:
    """Give `data` random non-trivial statistics (in place; returned): every davg/dstd pair in
    the descriptor's statistics tree, and bias_atom_e."""
    rng = np.random.default_rng(seed)
    b = data["buffers"]
    dtype = b["bias_atom_e"].dtype

    def visit(node):
        if isinstance(node, list):
            for v in node:
                visit(v)
            return
        if not isinstance(node, dict):
            return
        if "davg" in node and "dstd" in node:
            nt, ncomp = node["davg"].shape
            # as DeePMD's statistics: a mean for s only; one std for s, one shared by (x, y, z)
            # s/r (anything else would break rotation invariance)
            davg = np.zeros((nt, ncomp))
            davg[:, 0] = rng.normal(0.05, 0.05, nt)
            dstd = np.repeat(rng.uniform(0.05, 0.2, (nt, 2)),
                             [1, ncomp - 1] if ncomp > 1 else [1, 0], axis=1)
            node["davg"], node["dstd"] = davg.astype(dtype), dstd.astype(dtype)
        for k in sorted(node):
            if k not in ("davg", "dstd"):
                visit(node[k])

    visit(b["descriptor"])
    b["bias_atom_e"] = np.array([-2.1, -0.7][: b["bias_atom_e"].shape[0]], dtype=dtype)
    return data


def tiny_descriptors() -> dict:
    """"family:variant" -> descriptor section, from the TINY dicts of tests/tiny/*.py."""
    import importlib.util

    out = {}
    for path in sorted((TESTS / "tiny").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"tiny_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name, desc in getattr(mod, "TINY", {}).items():
            out[f"{path.stem}:{name}"] = desc
    return out


# the message-passing tiny variant the tests compile to .pt2 (AOTInductor takes minutes per
# model; this one, without angles, has the smallest graph)
PT2_MESSAGE_PASSING = "dpa3:node_edge"


def check_fd_forces(data: dict, rows=((0, 0), (3, 1), (6, 2)), h: float = 1e-5,
                    atol: float = 1e-7) -> np.ndarray:
    """Central differences of the reference energy (no complex step, no autodiff) on an
    8-atom triclinic frame equal the reference forces at `rows` (atom, axis); returns F."""
    from deepmd_md.backends.numpy import reference

    coord, atype, box = random_frames(8, TRICLINIC_BOX, seed=9, min_dist=0.95)
    f = reference.evaluate(data, coord, atype, box)["force"][0]
    plus, minus = np.repeat(coord, len(rows), axis=0), np.repeat(coord, len(rows), axis=0)
    for n, (i, x) in enumerate(rows):
        plus[n, i, x] += h
        minus[n, i, x] -= h
    boxes = np.repeat(box, len(rows), axis=0)
    types = np.repeat(atype, len(rows), axis=0)
    ep = reference.evaluate(data, plus, types, boxes)["energy"]
    em = reference.evaluate(data, minus, types, boxes)["energy"]
    np.testing.assert_allclose(-(ep - em) / (2 * h), [f[i, x] for i, x in rows], rtol=0,
                               atol=atol)
    return f


def overridden(desc: dict, over: dict) -> dict:
    """A copy of a descriptor section with `over` applied; a dict value updates the sub-dict
    of the same key (e.g. {"repflow": {"a_rcut": 6.5}})."""
    out = copy.deepcopy(desc)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def normalized_descriptor(desc: dict) -> dict:
    """A descriptor section with the schema's defaults filled in (as `dpmd train` sees it)."""
    from deepmd_md.config.args import DESCRIPTOR
    from deepmd_md.config.schema import normalize_tree

    return normalize_tree(copy.deepcopy(desc), (), DESCRIPTOR, "model/descriptor")


def make_model(descriptor: str = "se_e2_a", seed: int = 1, stats_seed: int = 0, **over) -> dict:
    """A fresh tiny ModelData with random statistics."""
    from deepmd_md.model.model import init_model

    return random_stats(init_model(model_config(descriptor, seed=seed, **over), seed), stats_seed)


def as_float32(data: dict) -> dict:
    """The same weights in a float32 model (a copy)."""
    from deepmd_md.tree import tree_map

    out = copy.deepcopy(data)
    out["config"]["descriptor"]["precision"] = "float32"
    out["config"]["fitting_net"]["precision"] = "float32"
    for k in ("params", "buffers"):
        out[k] = tree_map(lambda x: np.asarray(x, dtype=np.float32), out[k])
    return out


# -- configurations ----------------------------------------------------------------------------


def random_frames(nat: int, box=ORTHO_BOX, nf: int = 1, seed: int = 0, min_dist: float = 1.0,
                  ntypes: int = 2, extent: float = 4.0):
    """Random frames with every pair (and periodic image) at least min_dist apart.

    box: [9] (same for all frames) or None (a cluster in a cube of edge `extent`).
    Returns coord [nf, nat, 3], atype [nf, nat] (0,1,0,1,... over ntypes), box [nf, 9] | None.
    """
    rng = np.random.default_rng(seed)
    frames = []
    cell = None if box is None else np.asarray(box, float).reshape(3, 3)
    images = (np.zeros((1, 3)) if cell is None else
              np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1)
                        for k in (-1, 0, 1)], float) @ cell)
    while len(frames) < nf:
        pts: list[np.ndarray] = []
        for _ in range(100000):
            if len(pts) == nat:
                break
            p = rng.uniform(0, 1, 3) @ cell if cell is not None else rng.uniform(0, extent, 3)
            if all(np.min(np.linalg.norm(q + images - p, axis=1)) >= min_dist for q in pts):
                pts.append(p)
        else:
            raise RuntimeError("cannot place atoms; lower min_dist or nat")
        frames.append(np.array(pts))
    coord = np.stack(frames)
    atype = np.tile(np.arange(nat) % ntypes, (nf, 1))
    boxes = None if box is None else np.tile(np.asarray(box, float), (nf, 1))
    return coord, atype, boxes


def max_neighbors(coord, atype, box, rcut: float, ntypes: int = 2) -> np.ndarray:
    """Brute force (explicit image loop, independent of deepmd_md.data.neighbor): [ntypes] largest
    number of neighbors of each type within rcut over all atoms and frames."""
    coord = np.asarray(coord, float)
    nf, nat, _ = coord.shape
    best = np.zeros(ntypes, int)
    for f in range(nf):
        if box is None:
            shifts = np.zeros((1, 3))
        else:
            cell = np.asarray(box[f], float).reshape(3, 3)
            n = int(np.ceil(rcut / np.min(np.abs(np.linalg.det(cell)) / np.linalg.norm(
                np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)))) + 1
            rng = np.arange(-n, n + 1)
            shifts = np.array([(i, j, k) for i in rng for j in rng for k in rng], float) @ cell
        for i in range(nat):
            d = np.linalg.norm(coord[f][None, :, :] + shifts[:, None, :] - coord[f, i], axis=-1)
            d[np.all(shifts == 0, axis=1), i] = np.inf  # not itself
            inside = d < rcut  # [nshift, nat]
            cnt = np.bincount(np.broadcast_to(atype[f], inside.shape)[inside], minlength=ntypes)
            best = np.maximum(best, cnt[:ntypes])
    return best


def assert_close(actual, desired, tol: float, what: str = "") -> None:
    """max |a - d| <= tol * max(1, max |d|) (a relative tolerance on the array's scale)."""
    a, d = np.asarray(actual, float), np.asarray(desired, float)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    scale = max(1.0, float(np.max(np.abs(d))) if d.size else 1.0)
    err = float(np.max(np.abs(a - d))) if d.size else 0.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:.1e} x scale {scale:.3g}"


# -- systems on disk ---------------------------------------------------------------------------


def write_system(root: Path, coord, atype, box, energy=None, force=None, virial=None,
                 type_map=TYPE_MAP, nopbc: bool = False) -> Path:
    """deepmd/npy system in `root` (one set). coord [nf, nat, 3]; atype [nat]; box [nf, 9]|None."""
    root = Path(root)
    (root / "set.000").mkdir(parents=True, exist_ok=True)
    coord = np.asarray(coord)
    nf = coord.shape[0]
    (root / "type.raw").write_text(" ".join(str(int(t)) for t in np.ravel(atype)) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if nopbc:
        (root / "nopbc").write_text("")
    arrays = {"coord": coord.reshape(nf, -1), "box": box, "energy": energy,
              "force": None if force is None else np.asarray(force).reshape(nf, -1),
              "virial": virial}
    for k, v in arrays.items():
        if v is not None:
            np.save(root / "set.000" / f"{k}.npy", np.asarray(v, dtype=np.float64))
    return root


def teacher_system(root: Path, nat: int = 8, nf: int = 4, box=ORTHO_BOX, seed: int = 0,
                   teacher_seed: int = 7, nopbc: bool = False) -> Path:
    """A system labelled by a random teacher model (NumPy reference): learnable, non-trivial.

    The teacher's dstd is small so that forces are O(1) eV/Å."""
    from deepmd_md.backends.numpy import reference

    teacher = make_model(seed=teacher_seed, stats_seed=teacher_seed)
    teacher["buffers"]["descriptor"]["dstd"] = teacher["buffers"]["descriptor"]["dstd"] * 0.3
    coord, atype, boxes = random_frames(nat, None if nopbc else box, nf, seed, min_dist=1.2)
    ref = reference.evaluate(teacher, coord, atype, boxes)
    return write_system(root, coord, atype[0], boxes, ref["energy"], ref["force"],
                        nopbc=nopbc)


def train_input(systems, workdir: Path, *, numb_steps: int = 4, model: dict | None = None,
                validation=None, **training) -> dict:
    """A DeePMD-kit style input dict (not normalised) for a tiny model; paths made absolute."""
    m = model or model_config()
    m = copy.deepcopy(m)
    inp = {
        "model": m,
        "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0,
                 "start_pref_f": 1000.0, "limit_pref_f": 1.0},
        "training": {
            "training_data": {"systems": [str(s) for s in systems], "batch_size": 1},
            "numb_steps": numb_steps, "seed": 10, "disp_freq": 1, "save_freq": numb_steps,
            "disp_file": str(Path(workdir) / "lcurve.out"),
            "save_ckpt": str(Path(workdir) / "model.ckpt"),
        },
    }
    if validation is not None:
        inp["training"]["validation_data"] = {"systems": [str(s) for s in validation],
                                              "batch_size": 1, "numb_btch": 1}
    inp["training"].update(training)
    return inp


def read_lcurve(path) -> tuple[list[str], np.ndarray]:
    """(column names, values [nlines, ncols]) of an lcurve.out."""
    lines = Path(path).read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    names = header[0].lstrip("#").split() if header else []
    rows = [list(map(float, ln.split())) for ln in lines if ln.strip() and not ln.startswith("#")]
    return names, np.array(rows)


# -- the CLI -----------------------------------------------------------------------------------


def dpmd_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                       env.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    env["OMP_NUM_THREADS"] = "1"
    env.pop("COLUMNS", None)
    return env


def dpmd_argv(*args) -> list[str]:
    return [sys.executable, "-m", "deepmd_md.cli.main", *map(str, args)]


def run_dpmd(*args, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(dpmd_argv(*args), cwd=cwd, env=dpmd_env(), capture_output=True,
                          text=True, timeout=timeout)


def tree_files(root) -> set[str]:
    """Every path under root (files and folders), relative."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*")}
