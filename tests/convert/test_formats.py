"""`dpmd convert-backend A B` for every pair of formats in deepmd_md.formats.FORMATS that we
write (and training checkpoints as sources): the weights arrive bit for bit, `dpmd test` on B
predicts what it predicts on the model's .dp to 1e-10 (fp64), and A -> B -> A gives A's
weights bit for bit. A format whose backend cannot be imported or is not written yet is
skipped with its reason.

All pairs run in one subprocess (pairs.py): it imports Paddle before TensorFlow, which this
pytest process cannot promise once other test modules have imported either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dpmd_env

from deepmd_md.formats import FORMATS

HERE = Path(__file__).resolve().parent
TOL = 1e-10
SLOW = ".pt2"  # minutes to write: converted to from the .dp only
TARGETS = [s for s, f in FORMATS.items() if f.write is not None]
SOURCES = [*TARGETS, ".ckpt"]
PAIRS = [(a, b) for a in SOURCES for b in TARGETS if b != SLOW or a == ".dp"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("pairs")
    r = subprocess.run([sys.executable, str(HERE / "pairs.py"), str(work)], env=dpmd_env(),
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout)
    for suffix, why in res["skipped"].items():
        print(f"convert: {suffix} skipped: {why}")
    return res


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_pair(results, a, b):
    for s in (a, b):
        if s in results["skipped"]:
            print(f"{s} skipped: {results['skipped'][s]}")
            pytest.skip(f"{s}: {results['skipped'][s]}")
    res = results["pairs"].get(f"{a}>{b}")
    assert res is not None, f"{a} -> {b} did not run"
    assert "error" not in res, res["error"]
    print(f"{a} -> {b}: dpmd test max |d| {res['max_diff']:.1e}, {res['seconds']} s")
    assert res["weights_equal"], "weights changed"
    assert res["max_diff"] <= TOL, res["max_diff"]
    if a in TARGETS and a not in (SLOW, b):
        assert res["round_trip_equal"], f"{a} -> {b} -> {a} changed the weights"


def test_every_writer_is_a_pair():
    """A new format row with a writer joins the matrix without editing this file."""
    assert {b for _, b in PAIRS} == set(TARGETS) and ".dp" in TARGETS
