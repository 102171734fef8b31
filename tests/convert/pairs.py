"""Every format pair through `dpmd convert-backend`, in one process of its own (run by
test_formats.py): python tests/convert/pairs.py WORKDIR > results.json

Paddle is imported before anything else when it is installed: TensorFlow imported first makes
a later Paddle import crash (platform notes), and the pairs need both in one process.

For a tiny model written in every format we write (sources; a training checkpoint too), each
pair A -> B: `dpmd convert-backend A B`; the weights read back from B equal the model's bit for
bit; `dpmd test -d` on B predicts what it predicts on the .dp (max |d| over energies and
forces); and B converted back to A's format gives A's weights bit for bit. A .pt2 target
compiles for minutes, so only the .dp is converted to .pt2 (that .pt2 is then a source for
every other target). Output: {"skipped": {suffix: reason}, "pairs": {"A>B": {...}}}.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import time
from pathlib import Path

if importlib.util.find_spec("paddle") is not None:
    import paddle  # noqa: F401  (before TensorFlow, see the docstring)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from helpers import make_model, teacher_system  # noqa: E402

from deepmd_md.cli.main import main as dpmd  # noqa: E402
from deepmd_md.formats import FORMATS, read_model, write_model  # noqa: E402
from deepmd_md.serialize import save_dp  # noqa: E402
from deepmd_md.tree import flatten  # noqa: E402

SLOW_TARGET = ".pt2"  # written from the .dp only


def _cli(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = dpmd([str(a) for a in argv])
    if rc not in (0, None):
        raise RuntimeError(f"dpmd {' '.join(map(str, argv))}: exit {rc}")
    return out.getvalue()


def _name(suffix: str) -> str:
    return f"model{suffix}"


def _predictions(model: Path, system: Path, prefix: Path) -> np.ndarray:
    """dpmd test's predicted energies and forces (the detail files' pred columns)."""
    _cli("test", "-m", model, "-s", system, "-d", prefix)
    e = np.loadtxt(f"{prefix}.e.out", ndmin=2)[:, 1]
    f = np.loadtxt(f"{prefix}.f.out", ndmin=2)[:, 3:6]
    return np.concatenate([e, f.ravel()])


def _same_weights(a: dict, b: dict) -> bool:
    fa, fb = flatten({"p": a["params"], "b": a["buffers"]}), \
        flatten({"p": b["params"], "b": b["buffers"]})
    return fa.keys() == fb.keys() and all(
        np.asarray(fa[k]).dtype == np.asarray(fb[k]).dtype and np.array_equal(fa[k], fb[k])
        for k in fa) and a["config"] == b["config"]


def main() -> None:
    work = Path(sys.argv[1])
    (work / "src").mkdir(parents=True, exist_ok=True)
    data = make_model("se_e2_a", seed=3, stats_seed=4)
    system = teacher_system(work / "system", nat=8, nf=2)
    skipped, sources = {}, {}
    for suffix, fmt in FORMATS.items():
        if fmt.write is None or suffix == SLOW_TARGET:
            continue
        path = work / "src" / _name(suffix)
        try:
            write_model(data, str(path))
        except Exception as e:  # noqa: BLE001  (a backend not installed, or not written yet)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            skipped[suffix] = f"{type(e).__name__}: {first}"
            continue
        sources[suffix] = path
    # a training checkpoint, as the trainer writes it (.dp layout plus optimizer trees)
    zeros = {k: np.zeros_like(v) for k, v in flatten(data["params"]).items()}
    ckpt = work / "src" / "model.ckpt"
    save_dp(data, str(ckpt), extra_trees={"opt_m": zeros, "opt_v": zeros}, extra={"step": 1})
    sources[".ckpt"] = ckpt
    ref = _predictions(sources[".dp"], system, work / "ref")

    targets = [s for s, f in FORMATS.items() if f.write is not None and s not in skipped]
    pairs, order = {}, [".dp"] + [s for s in sources if s != ".dp"]
    for a in order:
        for b in targets:
            if b == SLOW_TARGET and a != ".dp":
                continue
            key = f"{a}>{b}"
            out = work / key.replace(">", "_to_").replace(".", "") / _name(b)
            out.parent.mkdir()
            res: dict = {}
            t0 = time.perf_counter()
            try:
                _cli("convert-backend", sources[a], out)
                if b == SLOW_TARGET:  # the other sources convert from it
                    sources[b] = out
                    order.append(b)
                res["weights_equal"] = _same_weights(read_model(str(out)), data)
                pred = _predictions(out, system, out.parent / "test")
                res["max_diff"] = float(np.abs(pred - ref).max())
                if a != b and a in FORMATS and FORMATS[a].write is not None \
                        and a != SLOW_TARGET:  # A -> A -> A is the pair A -> A twice
                    back = out.parent / "back" / _name(a)
                    back.parent.mkdir()
                    _cli("convert-backend", out, back)
                    res["round_trip_equal"] = _same_weights(read_model(str(back)),
                                                            read_model(str(sources[a])))
            except Exception as e:  # noqa: BLE001  (reported, the test fails on it)
                res["error"] = f"{type(e).__name__}: {e}"
            res["seconds"] = round(time.perf_counter() - t0, 1)
            pairs[key] = res
    json.dump({"skipped": skipped, "pairs": pairs}, sys.stdout, indent=1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
