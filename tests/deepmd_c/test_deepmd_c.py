"""deepmd_md's DeePMD-kit C API (plugin/deepmd_c, libdeepmd_c.so) driven the way a DPRc (-DDPRC)
AMBER sander drives DeePMD-kit's: a C harness (dprc_harness.c, compiled here with the system C
compiler against deepmd/c_api.h) loads several models for the model deviation, passes a QM region
as local atoms with the MM atoms and periodic images around it as ghosts and its own neighbor
list, adds ghost forces back onto their atoms and reports the deviation. Every number is compared
with Python inference (deepmd_md.infer.DeepPot and the torch backend it runs) to 1e-10, the
deviation with NumPy's std over the models; the error paths answer through CheckOK, no abort.

Models: two tiny se_e2_a models with different seeds, frozen to .pth, the second also to .pt2."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TRICLINIC_BOX, make_model, random_frames

torch = pytest.importorskip("torch")

TOL = 1e-10
HERE = Path(__file__).resolve().parent
SRC = ROOT / "plugin" / "deepmd_c"
HEADER = SRC / "include" / "deepmd" / "c_api.h"
NAT, SKIN = 16, 0.5
QM = [0, 3, 6, 9, 12]  # the QM region: atoms of both types


def _compiler(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name} on PATH")
    return path


@pytest.fixture(scope="module")
def harness(lib, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("harness") / "dprc_harness"
    cmd = [_compiler("gcc"), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{SRC / 'include'}",
           str(HERE / "dprc_harness.c"), f"-L{lib.parent}", "-ldeepmd_c", f"-Wl,-rpath,{lib.parent}",
           "-lm", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[tuple[dict, Path]]:
    """(ModelData, path): A.pth, B.pt2 and B.pth (B.pt2 when AOTInductor can compile here)."""
    from deepmd_md.backends.torch.freeze import freeze_pth

    tmp = tmp_path_factory.mktemp("models")
    a, b = make_model(seed=1, stats_seed=0), make_model(seed=2, stats_seed=1)
    freeze_pth(a, str(tmp / "a.pth"))
    freeze_pth(b, str(tmp / "b.pth"))
    out = [(a, tmp / "a.pth")]
    try:
        from deepmd_md.backends.torch.aoti import freeze_pt2

        freeze_pt2(b, str(tmp / "b.pt2"))  # ~40 s on 2 cores
        out.append((b, tmp / "b.pt2"))
    except Exception as e:  # noqa: BLE001 - no AOTInductor toolchain: .pth models only
        print(f"no .pt2 model: {e!r}")
    out.append((b, tmp / "b.pth"))
    return out


@pytest.fixture(scope="module")
def system():
    coord, atype, box = random_frames(NAT, TRICLINIC_BOX, seed=3, min_dist=1.2)
    return coord[0], atype[0], box[0]


def parse(text: str) -> tuple[dict, dict]:
    """Harness output -> ({(name, index): array}, {name: message})."""
    values, msgs = {}, {}
    for line in text.splitlines():
        if line.startswith("msg "):
            _, name, msg = line.split(" ", 2)
            msgs[name] = msg
        elif line and line != "done":
            name, idx, n, *vals = line.split()
            assert len(vals) == int(n), line[:80]
            values[name, int(idx)] = np.array(vals, dtype=float)
    return values, msgs


@pytest.fixture(scope="module")
def run(harness, models, system, tmp_path_factory):
    coord, atype, box = system
    inp = tmp_path_factory.mktemp("run") / "input.txt"
    lines = [f"models {len(models)}", *(str(p) for _, p in models), f"natoms {NAT}",
             "box " + " ".join(f"{x:.17g}" for x in box)]
    lines += [f"{x:.17g} {y:.17g} {z:.17g} {t}" for (x, y, z), t in zip(coord, atype, strict=True)]
    lines += [f"qm {len(QM)} " + " ".join(map(str, QM)), f"rcut 0 skin {SKIN}"]
    inp.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(harness), str(inp)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("done"), r.stdout[-3000:] + r.stderr[-3000:]
    return parse(r.stdout)


def qm_reference(data: dict, coord, atype, box, qm) -> tuple[float, np.ndarray, np.ndarray]:
    """The QM region's energy (its atoms' energies, their environment the whole periodic system),
    its negative gradient on every system atom [nat, 3] and its virial [9] (sum over the extended
    atoms of r x F), from the torch backend on Python's own images and neighbor list."""
    from deepmd_md import keys
    from deepmd_md.backends.torch.adapter import asarray
    from deepmd_md.model.frames import prepare_frames
    from deepmd_md.model.model import atomic_outputs

    prep = prepare_frames(data["config"], coord[None], atype[None], box[None])
    mapping = prep[keys.MAPPING][0]
    ext = torch.tensor(coord[mapping] + prep[keys.SHIFT][0], requires_grad=True)
    ae = atomic_outputs(data["config"], asarray(data["params"]), asarray(data["buffers"]), ext[None],
                        torch.as_tensor(prep[keys.EXT_ATYPE]), torch.as_tensor(prep[keys.NLIST]),
                        mapping=torch.as_tensor(prep[keys.MAPPING]))["energy"]
    e = ae[0, qm].sum()
    (g,) = torch.autograd.grad(e, [ext])
    fext = -g.numpy()
    force = np.zeros((len(coord), 3))
    np.add.at(force, mapping, fext)
    virial = np.einsum("ia,ib->ab", ext.detach().numpy(), fext).ravel()
    return float(e), force, virial


def close(actual, desired, tol=TOL, what=""):
    desired = np.asarray(desired, float)
    err = np.max(np.abs(np.asarray(actual, float).reshape(desired.shape) - desired)) if desired.size else 0.0
    assert err <= tol * max(1.0, np.max(np.abs(desired))), f"{what}: max error {err:.3g}"


def test_header_and_exports(lib, tmp_path):
    """The header compiles as C99 and C++11, and every DP_ function it declares is exported."""
    src = tmp_path / "inc.c"
    src.write_text('#include "deepmd/c_api.h"\nint main(void) { return DP_C_API_VERSION == 27 ? 0 : 1; }\n')
    for cc, std in ((_compiler("gcc"), "-std=c99"), (_compiler("g++"), "-std=c++11")):
        r = subprocess.run([cc, std, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x",
                            "c" if cc.endswith("gcc") else "c++", f"-I{SRC / 'include'}", str(src)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    names = sorted(set(re.findall(r"\b(DP_\w+)\(", HEADER.read_text())))
    assert len(names) > 70
    so = ctypes.CDLL(str(lib))
    missing = [n for n in names if not hasattr(so, n)]
    assert not missing, missing


def test_dprc_step_matches_python(run, models, system):
    """QM region with ghosts and the harness's list: energy, folded forces, virial of every model
    equal Python's to 1e-10; ghost atoms' atomic energies are 0, the local ones DeepPot's."""
    from deepmd_md.infer import DeepPot

    values, _ = run
    coord, atype, box = system
    nloc, nghost = values["region", 0]
    assert nloc == len(QM) and nghost > NAT  # MM atoms and periodic images
    for k, (data, path) in enumerate(models):
        e, f, v = qm_reference(data, coord, atype, box, QM)
        close(values["qm_energy", k], [e], what=f"energy {path.name}")
        close(values["qm_force", k], f, what=f"force {path.name}")
        close(values["qm_virial", k], v, what=f"virial {path.name}")
        ae = values["qm_atom_energy", k]
        _, _, _, dp_ae, _ = DeepPot(str(path)).eval(coord[None], box[None], atype, atomic=True)
        close(ae[: len(QM)], dp_ae[0, QM, 0], what="atomic energy")
        assert np.all(ae[len(QM):] == 0.0)
        close(values["qm_atom_virial", k].reshape(-1, 9).sum(0), v, what="atomic virial sum")
    assert np.ptp([values["qm_energy", k][0] for k in range(len(models))]) > 1e-3  # models differ


def test_model_deviation(run, models, system):
    """The deviation the harness computes (sander's: energy std, per-atom force std over models)
    equals NumPy's std over the Python references."""
    values, _ = run
    coord, atype, box = system
    refs = [qm_reference(d, coord, atype, box, QM) for d, _ in models]
    energies = np.array([r[0] for r in refs])
    forces = np.stack([r[1] for r in refs])  # [nmodels, nat, 3]
    std_f = np.sqrt(np.var(forces, axis=0).sum(-1))
    close(values["devi_e", 0], [np.std(energies)], what="energy std")
    close(values["devi_f", 0], std_f, what="force std")
    close(values["devi_f_max", 0], [std_f.max()], what="max force std")
    assert std_f.max() > 1e-4


def test_ago_keeps_the_list(run, models, system):
    """ago > 0: the list kept at ago == 0 is used (the empty list passed is not read); ago == 0
    with the empty list: every QM atom is alone (its energy with no neighbors)."""
    from deepmd_md.infer import DeepPot

    values, _ = run
    _, atype, box = system
    coord2 = values["coord2", 0].reshape(-1, 3)
    for k, (data, path) in enumerate(models):
        e, f, v = qm_reference(data, coord2, atype, box, QM)
        close(values["qm2_energy", k], [e], what="energy, moved atoms")
        close(values["qm2_force", k], f, what="force, moved atoms")
        close(values["qm2_virial", k], v, what="virial, moved atoms")
        dp = DeepPot(str(path))
        alone = sum(dp.eval(coord2[None, i], None, atype[i:i + 1])[0][0, 0] for i in QM)
        close(values["qm_isolated_energy", 0][k], alone, what="QM atoms without neighbors")
        if k == 0:  # an empty list as the first list an object gets is a list, not "none given"
            close(values["fresh_isolated_energy", 0], [alone], what="empty first list")


def test_single_model_forms(run, models):
    """DP_DeepPot with the same list equals the model-deviation object's model; the float form
    agrees to float precision; a virtual atom (type -1) changes nothing and gets no force."""
    values, _ = run
    for k in range(len(models)):
        for q in ("energy", "force", "virial"):
            close(values[f"single_{q}", k], values[f"qm_{q}", k], 1e-12, f"single {q}")
            close(values[f"singlef_{q}", k], values[f"qm_{q}", k], 1e-5, f"float {q}")
    close(values["virtual_energy", 0], values["qm_energy", 0], 1e-12, "virtual atom: energy")
    close(values["virtual_force", 0], values["qm_force", 0], 1e-12, "virtual atom: forces")
    assert np.all(values["virtual_own_force", 0] == 0.0)
    if any(p.suffix == ".pt2" for _, p in models):  # B.pt2 and B.pth: one model, two formats
        close(values["qm_force", 1], values["qm_force", 2], what=".pt2 vs .pth")


def test_whole_system_without_list(run, models, system):
    """DP_DeepPotModelDeviCompute / DP_DeepPotCompute / DP_DeepPotCompute2 (the library builds the
    list and the periodic images) equal DeepPot.eval, per-atom values and two frames included."""
    from deepmd_md.infer import DeepPot

    values, _ = run
    coord, atype, box = system
    for k, (_, path) in enumerate(models):
        e, f, v, ae, av = DeepPot(str(path)).eval(coord[None], box[None], atype, atomic=True)
        close(values["full_energy", k], e[0], what="energy")
        close(values["full_force", k], f[0], what="force")
        close(values["full_virial", k], v[0], what="virial")
        if k == 0:
            close(values["full_atom_energy", 0], ae[0, :, 0], what="atomic energy")
            close(values["full_atom_virial", 0], av[0], what="atomic virial")
    coord2 = values["coord2", 0].reshape(-1, 3)
    e, f, v = DeepPot(str(models[0][1])).eval(np.stack([coord, coord2]), np.stack([box, box]), atype)
    close(values["frames_energy", 0], e[:, 0], what="two frames: energy")
    close(values["frames_force", 0], f, what="two frames: force")
    close(values["frames_virial", 0], v, what="two frames: virial")


def test_errors_are_messages(run):
    """Missing files, a type beyond the model's, a NULL list, nghost > natoms, several frames
    for the deviation: CheckOK says what is wrong, the harness carries on (it printed `done`),
    and the next good call clears the message."""
    values, msgs = run
    assert "/nonexistent/dir/model.pth" in msgs["err_missing"]
    assert "not loaded" in msgs["err_missing_compute"]
    assert "/nonexistent/dir/model.pth" in msgs["err_missing_compute"]
    assert "/nonexistent/other.pt2" in msgs["err_devi_missing"]
    assert "atom 1 has type 7" in msgs["err_type"] and "O H" in msgs["err_type"]
    assert values["recovered", 0][0] == 1.0 and "err_after" not in msgs
    assert "NULL" in msgs["err_null_nlist"]
    assert "nghost" in msgs["err_nghost"]
    assert "one frame" in msgs["err_devi_frames"]
    assert msgs["typemap"] == "O H"
    assert not {"devi_new", "devi_compute", "devi_compute2", "devi_empty", "single_new"} & set(msgs)


def test_python_helpers(lib):
    """python -m deepmd_md.deepmd_c prints the header's directory and, once built, the flags."""
    from deepmd_md import deepmd_c

    inc = Path(deepmd_c.include_dir())
    assert (inc / "deepmd" / "c_api.h").is_file()
    assert deepmd_c.main(["--includedir"]) == 0
    if deepmd_c.library_path() is not None:
        assert f"-L{deepmd_c.library_dir()}" in deepmd_c.libs()


def test_cmake_find_package(lib, models, tmp_path):
    """A CMake project with find_package(DeePMD) and DeePMD::deepmd_c (as DeePMD-kit's own
    instructions for C API users say) builds against deepmd_md's prefix and runs a model."""
    from deepmd_md import deepmd_c

    cmake = _compiler("cmake")
    if deepmd_c.library_path() is not None:
        prefix = Path(deepmd_c.prefix())
    else:  # not installed yet: the installed layout, assembled here
        prefix = tmp_path / "prefix"
        (prefix / "lib" / "cmake" / "DeePMD").mkdir(parents=True)
        (prefix / "include" / "deepmd").mkdir(parents=True)
        shutil.copy(lib, prefix / "lib")
        shutil.copy(HEADER, prefix / "include" / "deepmd")
        shutil.copy(SRC / "cmake" / "DeePMDConfig.cmake", prefix / "lib" / "cmake" / "DeePMD")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(use_deepmd C)\nfind_package(DeePMD REQUIRED)\n"
        "add_executable(tmap tmap.c)\ntarget_link_libraries(tmap PRIVATE DeePMD::deepmd_c)\n")
    (proj / "tmap.c").write_text(
        '#include <stdio.h>\n#include "deepmd/c_api.h"\n'
        "int main(int argc, char** argv) {\n  (void)argc;\n  DP_DeepPot* dp = DP_NewDeepPot(argv[1]);\n"
        "  const char* err = DP_DeepPotCheckOK(dp);\n  int bad = err[0] != 0;\n  DP_DeleteChar(err);\n"
        "  if (bad) return 1;\n  const char* t = DP_DeepPotGetTypeMap(dp);\n"
        '  printf("%s %g\\n", t, DP_DeepPotGetCutoff(dp));\n  DP_DeleteChar(t);\n'
        "  DP_DeleteDeepPot(dp);\n  return 0;\n}\n")
    build = tmp_path / "build"
    for cmd in ([cmake, "-S", str(proj), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}"],
                [cmake, "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run([str(build / "tmap"), str(models[0][1])], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0 and r.stdout.split() == ["O", "H", "3.5"], r.stdout + r.stderr
