"""GROMACS NNPot: `dpmd export-gromacs` writes a TorchScript `.pt` that runs a frozen deepmd_md model.

GROMACS (2025+, built with libtorch) loads a TorchScript module and calls its `forward` every step
with the inputs the MDP names (`nnpot-model-input1..`). The module written here holds the frozen
model's bytes (any format the C++ core loads: `.pth`, `.pt2`; a `.dp` or checkpoint is frozen to
`.pth` first) and calls one custom op, `dpmd_gmx::evaluate` (plugin/gromacs/nnpot_op.cc, in
libdpmd_gromacs.so), which runs the model through the core's C API in float64: nm -> Angstrom,
eV -> kJ/mol, atomic numbers -> the model's type_map, periodic images and neighbors built by the
core (or GROMACS' pair list). GROMACS dlopens that library before loading the module because its
path is in the zip record `extra/extension_libs`. docs/gromacs.md has the whole story.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from deepmd_md.errors import ConfigError, ModelFileError

OP_LIB = "libdpmd_gromacs.so"
KJ_PER_EV = 96.48533212331002  # kJ/mol per eV
MODES = ("periodic", "pairs", "open")
INPUTS = {
    "periodic": ["atom-positions", "atom-numbers", "box", "pbc"],
    "pairs": ["atom-positions", "atom-numbers", "atom-pairs", "pair-shifts"],
    "open": ["atom-positions", "atom-numbers"],
}
CORE_FORMATS = (".pth", ".pt2")  # what the C++ core loads; others are frozen to .pth first

ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No "
    "Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
Z_OF = {el: z for z, el in enumerate(ELEMENTS, start=1)}
# standard atomic masses, to tell the element of an atomtype without an at.num column
MASSES = {1: 1.008, 2: 4.0026, 3: 6.94, 4: 9.0122, 5: 10.81, 6: 12.011, 7: 14.007, 8: 15.999,
          9: 18.998, 10: 20.180, 11: 22.990, 12: 24.305, 13: 26.982, 14: 28.085, 15: 30.974,
          16: 32.06, 17: 35.45, 18: 39.948, 19: 39.098, 20: 40.078, 26: 55.845, 29: 63.546,
          30: 65.38, 35: 79.904, 53: 126.90}


# -- the module GROMACS loads ------------------------------------------------------------------

def op_library() -> Path:
    """Absolute path of libdpmd_gromacs.so (the op the exported modules call)."""
    from deepmd_md.lmp import native_lib

    path = native_lib(OP_LIB)
    if path is None:
        raise ConfigError(f"{OP_LIB} (the GROMACS op of deepmd_md) is not built: reinstall deepmd_md "
                          "with its C++ parts (`make install`)")
    return path.resolve()


def load_op() -> None:
    """Register dpmd_gmx::evaluate in this process (idempotent)."""
    import torch

    if not hasattr(torch.ops.dpmd_gmx, "evaluate"):
        torch.ops.load_library(str(op_library()))


def extract_model(path: str, dest_dir: str) -> str:
    """The frozen model inside a `.pt` written by export_gromacs, written to dest_dir; its path
    (so that every tool reads the file GROMACS runs)."""
    import torch

    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    extra = {"deepmd_md.json": ""}
    try:
        load_op()
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError subclasses for bad archives
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"cannot load {path}: not a TorchScript file ({first}.); a .pt "
                             "model here is what `dpmd export-gromacs` writes") from None
    if not extra["deepmd_md.json"]:
        raise ModelFileError(f"{path} is a TorchScript file but not one `dpmd export-gromacs` "
                             "wrote; give the .pth, .pt2 or .dp model")
    meta = json.loads(extra["deepmd_md.json"])
    out = os.path.join(dest_dir, "model" + meta["model_format"])
    with open(out, "wb") as f:
        f.write(module.model_file.numpy().tobytes())
    return out


def _module_classes():
    import torch
    from torch import Tensor

    class _Base(torch.nn.Module):
        def __init__(self, blob: Tensor, key: str, suffix: str, fparam, aparam):
            super().__init__()
            self.register_buffer("model_file", blob)
            self.key, self.suffix = key, suffix
            self.fparam, self.aparam = [float(v) for v in fparam], [float(v) for v in aparam]

    # real types, not the strings of `from __future__ import annotations` (TorchScript reads them)
    _Base.__annotations__ = {"key": str, "suffix": str, "fparam": list[float], "aparam": list[float]}

    class Periodic(_Base):
        """forward(atom-positions, atom-numbers, box, pbc) -> (energy kJ/mol, forces kJ/mol/nm)"""

        def forward(self, atom_positions: Tensor, atom_numbers: Tensor, box: Tensor | None = None,
                    pbc: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return torch.ops.dpmd_gmx.evaluate(self.model_file, self.key, self.suffix, "periodic",
                                               self.fparam, self.aparam, atom_positions, atom_numbers,
                                               box, pbc, None, None)

    class Pairs(_Base):
        """forward(atom-positions, atom-numbers, atom-pairs, pair-shifts) -> (energy, forces)"""

        def forward(self, atom_positions: Tensor, atom_numbers: Tensor,
                    atom_pairs: Tensor | None = None,
                    pair_shifts: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return torch.ops.dpmd_gmx.evaluate(self.model_file, self.key, self.suffix, "pairs",
                                               self.fparam, self.aparam, atom_positions, atom_numbers,
                                               None, None, atom_pairs, pair_shifts)

    class Open(_Base):
        """forward(atom-positions, atom-numbers) -> (energy, forces), no periodic boundaries"""

        def forward(self, atom_positions: Tensor, atom_numbers: Tensor) -> tuple[Tensor, Tensor]:
            return torch.ops.dpmd_gmx.evaluate(self.model_file, self.key, self.suffix, "open",
                                               self.fparam, self.aparam, atom_positions, atom_numbers,
                                               None, None, None, None)

    return {"periodic": Periodic, "pairs": Pairs, "open": Open}


# -- model metadata through the core (what GROMACS will load) ---------------------------------

def model_info(path: str) -> dict:
    """type_map, rcut, ... of a frozen model, read by the C++ core itself."""
    from deepmd_md.lmp import native_lib

    core = native_lib("libdpmd_core.so")
    if core is None:
        raise ConfigError("libdpmd_core.so is not built: reinstall deepmd_md with its C++ parts "
                          "(`make install`)")
    lib = ctypes.CDLL(str(core))
    lib.dpmd_model_load.restype = ctypes.c_void_p
    lib.dpmd_model_load.argtypes = [ctypes.c_char_p]
    lib.dpmd_last_error.restype = ctypes.c_char_p
    lib.dpmd_model_free.argtypes = [ctypes.c_void_p]
    for f, r in (("dpmd_model_ntypes", ctypes.c_int), ("dpmd_model_rcut", ctypes.c_double),
                 ("dpmd_model_dim_fparam", ctypes.c_int), ("dpmd_model_dim_aparam", ctypes.c_int),
                 ("dpmd_model_message_passing", ctypes.c_int), ("dpmd_model_backend", ctypes.c_char_p)):
        getattr(lib, f).restype = r
        getattr(lib, f).argtypes = [ctypes.c_void_p]
    lib.dpmd_model_type_name.restype = ctypes.c_char_p
    lib.dpmd_model_type_name.argtypes = [ctypes.c_void_p, ctypes.c_int]
    m = lib.dpmd_model_load(path.encode())
    if not m:
        raise ModelFileError(lib.dpmd_last_error().decode())
    try:
        names = [lib.dpmd_model_type_name(m, t).decode() for t in range(lib.dpmd_model_ntypes(m))]
        return {"type_map": names,
                "rcut": lib.dpmd_model_rcut(m), "dim_fparam": lib.dpmd_model_dim_fparam(m),
                "dim_aparam": lib.dpmd_model_dim_aparam(m),
                "message_passing": bool(lib.dpmd_model_message_passing(m)),
                "backend": lib.dpmd_model_backend(m).decode()}
    finally:
        lib.dpmd_model_free(m)


# -- GROMACS files: index groups, topology, structure ------------------------------------------

def read_index(path: str) -> dict[str, list[int]]:
    """Groups of a .ndx file: name -> 0-based atom indices."""
    if not os.path.isfile(path):
        raise ConfigError(f"index file not found: {path}")
    groups: dict[str, list[int]] = {}
    cur = None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        s = line.split(";")[0].strip()
        if not s:
            continue
        m = re.fullmatch(r"\[\s*(.+?)\s*\]", s)
        if m:
            cur = m.group(1)
            groups[cur] = []
            continue
        if cur is None:
            raise ConfigError(f"{path}:{n}: atom numbers before the first [ group ]")
        try:
            groups[cur] += [int(v) - 1 for v in s.split()]
        except ValueError:
            raise ConfigError(f"{path}:{n}: not atom numbers: {s!r}") from None
    return groups


def _gmx_top_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("GMXLIB", "").split(":") if p]
    if os.environ.get("GMXDATA"):
        dirs.append(Path(os.environ["GMXDATA"]) / "top")
    import shutil

    gmx = shutil.which("gmx")
    if gmx:
        dirs.append(Path(gmx).resolve().parents[1] / "share" / "gromacs" / "top")
    return dirs


def read_topology(path: str) -> list[dict]:
    """Atoms of a GROMACS topology in order: name, type, residue, charge, Z (atomic number)."""
    if not os.path.isfile(path):
        raise ConfigError(f"topology file not found: {path}")
    lines: list[tuple[str, int, str]] = []
    defines: set[str] = set()

    def read(p: Path, depth: int = 0):
        if depth > 20:
            raise ConfigError(f"{p}: #include nested too deeply")
        skip: list[bool] = []
        for n, raw in enumerate(p.read_text(errors="replace").splitlines(), 1):
            s = raw.split(";")[0].strip()
            if not s:
                continue
            words = s.split()
            if words[0] in ("#ifdef", "#ifndef"):
                on = (words[1] in defines) == (words[0] == "#ifdef")
                skip.append(not on or any(skip))
                continue
            if words[0] == "#else":
                if skip:
                    skip[-1] = not skip[-1] or any(skip[:-1])
                continue
            if words[0] == "#endif":
                if skip:
                    skip.pop()
                continue
            if skip and skip[-1]:
                continue
            if words[0] == "#define":
                defines.add(words[1])
            elif words[0] == "#include":
                name = s.split(None, 1)[1].strip().strip('"<>')
                for d in [p.parent] + _gmx_top_dirs():
                    if (d / name).is_file():
                        read(d / name, depth + 1)
                        break
                else:
                    raise ConfigError(f"{p}:{n}: cannot find the included file {name} (set GMXLIB)")
            elif not words[0].startswith("#"):
                lines.append((s, n, str(p)))

    read(Path(path))
    atomtypes: dict[str, tuple[int | None, float]] = {}
    moltypes: dict[str, list[dict]] = {}
    molecules: list[tuple[str, int]] = []
    section = mol = None
    for s, _n, _f in lines:
        m = re.fullmatch(r"\[\s*(\w+)\s*\]", s)
        if m:
            section = m.group(1).lower()
            continue
        w = s.split()
        if section == "atomtypes":
            # name [bonded_type] [at.num] mass charge ptype sigma epsilon
            p = next((i for i in range(3, min(len(w), 6)) if w[i] in ("A", "S", "V", "D")), None)
            if p is None:
                continue
            z = int(w[p - 3]) if p >= 4 and re.fullmatch(r"\d+", w[p - 3]) else None
            atomtypes[w[0]] = (z, float(w[p - 2]))
        elif section == "moleculetype":
            mol = w[0]
            moltypes[mol] = []
        elif section == "atoms" and mol is not None:
            mass = float(w[7]) if len(w) > 7 else None
            moltypes[mol].append({"type": w[1], "residue": w[3], "name": w[4],
                                  "charge": float(w[6]) if len(w) > 6 else None, "mass": mass})
        elif section == "molecules":
            molecules.append((w[0], int(w[1])))
    atoms = []
    for name, count in molecules:
        if name not in moltypes:
            raise ConfigError(f"{path}: molecule {name} in [ molecules ] has no [ moleculetype ]")
        for _ in range(count):
            for a in moltypes[name]:
                z, mass = atomtypes.get(a["type"], (None, None))
                if a["charge"] is None and a["type"] in atomtypes:
                    a = a | {"charge": 0.0}
                if z is None or z <= 0:
                    z = _z_from_mass(a["mass"] if a["mass"] is not None else mass)
                atoms.append(a | {"z": z})
    return atoms


def _z_from_mass(mass: float | None) -> int | None:
    if mass is None:
        return None
    z, m = min(MASSES.items(), key=lambda kv: abs(kv[1] - mass))
    return z if abs(m - mass) < 0.1 else None


def read_gro(path: str) -> list[dict]:
    """Atoms of a .gro file: residue, name, Z guessed from the atom name (first letter(s))."""
    if not os.path.isfile(path):
        raise ConfigError(f"structure file not found: {path}")
    lines = Path(path).read_text().splitlines()
    try:
        n = int(lines[1].strip())
        body = lines[2:2 + n]
    except (IndexError, ValueError):
        raise ConfigError(f"{path}: not a .gro file") from None
    atoms = []
    for line in body:
        res, name = line[5:10].strip(), line[10:15].strip()
        letters = re.sub(r"[^A-Za-z]", "", name)
        two = letters[:2].capitalize()
        z = Z_OF.get(two) if res.upper() == name.upper() and two in Z_OF else Z_OF.get(letters[:1].upper())
        atoms.append({"residue": res, "name": name, "z": z, "charge": None})
    return atoms


# -- export ------------------------------------------------------------------------------------

def _frozen_file(model: str, tmp: str) -> str:
    """A file the core loads: the model itself (.pth, .pt2) or its .pth, frozen here."""
    if not os.path.exists(model):
        raise ModelFileError(f"model file not found: {model}")
    if model.endswith(CORE_FORMATS):
        return model
    from deepmd_md.infer.deep_pot import load_model_data

    try:
        data = load_model_data(model)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"cannot read {model} as a deepmd_md model (.pth, .pt2, .dp or "
                             f"checkpoint): {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    from deepmd_md.backends.torch.freeze import freeze_pth

    out = os.path.join(tmp, "model.pth")
    freeze_pth(data, out)
    return out


def _group_atoms(args_index, group, topology, structure) -> tuple[list[dict], list[int], int] | None:
    if group is None:
        if args_index or topology or structure:
            raise ConfigError("--index/--topology/--structure describe the NN group: give --group NAME too")
        return None
    if topology:
        atoms = read_topology(topology)
    elif structure:
        atoms = read_gro(structure)
    else:
        raise ConfigError("--group needs --topology (topol.top) or --structure (conf.gro) to know the "
                          "elements of its atoms")
    if args_index:
        groups = read_index(args_index)
        if group not in groups:
            raise ConfigError(f"group '{group}' is not in {args_index} (groups: {', '.join(groups)})")
        idx = groups[group]
    elif group == "System":
        idx = list(range(len(atoms)))
    else:
        raise ConfigError(f"group '{group}': give the index file with --index (only System is implicit)")
    if not idx:
        raise ConfigError(f"group '{group}' is empty")
    bad = [i for i in idx if i < 0 or i >= len(atoms)]
    if bad:
        raise ConfigError(f"group '{group}' names atom {bad[0] + 1} but the "
                          f"{'topology' if topology else 'structure'} has {len(atoms)} atoms")
    return atoms, idx, len(atoms)


def export(model: str, output: str, *, mode: str = "periodic", fparam=(), aparam=(),
           index: str | None = None, group: str | None = None, topology: str | None = None,
           structure: str | None = None, pair_buffer: float = 0.1) -> dict:
    """Write the GROMACS module `output` (.pt) for `model`; returns what the MDP lines need."""
    import torch

    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    if not output.endswith(".pt"):
        raise ConfigError(f"GROMACS loads only .pt model files (nnpot-modelfile); got {output}")
    lib = op_library()
    with tempfile.TemporaryDirectory() as tmp:
        frozen = _frozen_file(model, tmp)
        info = model_info(frozen)
        blob = Path(frozen).read_bytes()
    suffix = Path(frozen).suffix
    if len(fparam) != info["dim_fparam"]:
        raise ConfigError(f"the model takes {info['dim_fparam']} frame parameters: give them with "
                          f"--fparam (got {len(fparam)})")
    if len(aparam) != info["dim_aparam"]:
        raise ConfigError(f"the model takes {info['dim_aparam']} atomic parameters (the same for every "
                          f"atom): give them with --aparam (got {len(aparam)})")
    usable = [t for t in info["type_map"] if t in Z_OF]
    if not usable:
        raise ConfigError(f"the model's type_map {info['type_map']} holds no element symbols: GROMACS "
                          "passes atomic numbers, which map to the type_map by element symbol")
    sel = _group_atoms(index, group, topology, structure)
    counts: Counter = Counter()
    charge = None
    if sel is not None:
        atoms, idx, natoms = sel
        for i in idx:
            a = atoms[i]
            el = ELEMENTS[a["z"] - 1] if a["z"] else None
            if el is None:
                raise ConfigError(f"cannot tell the element of atom {i + 1} ({a['name']}) of group "
                                  f"'{group}'; use --topology with atomtypes that have at.num")
            counts[el] += 1
        missing = [el for el in counts if el not in info["type_map"]]
        if missing:
            first = next(i for i in idx if ELEMENTS[atoms[i]["z"] - 1] == missing[0])
            raise ConfigError(
                f"element {missing[0]} ({counts[missing[0]]} atoms of group '{group}', e.g. atom "
                f"{first + 1} {atoms[first]['name']}) is not in the model's type_map "
                f"[{', '.join(info['type_map'])}]")
        if all(atoms[i]["charge"] is not None for i in idx):
            charge = sum(atoms[i]["charge"] for i in idx)

    load_op()
    key = hashlib.sha256(blob).hexdigest()[:32]
    module = _module_classes()[mode](torch.frombuffer(bytearray(blob), dtype=torch.uint8), key, suffix,
                                     fparam, aparam)
    scripted = torch.jit.script(module)
    meta = {"format": "deepmd_md.gromacs", "version": 1, "mode": mode, "inputs": INPUTS[mode],
            "model": os.path.basename(model), "model_format": suffix, "key": key,
            "type_map": info["type_map"], "rcut": info["rcut"]}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output + ".tmp.pt"
    torch.jit.save(scripted, tmp_out, _extra_files={"extension_libs": str(lib),
                                                   "deepmd_md.json": json.dumps(meta)})
    os.replace(tmp_out, output)
    _self_check(output, mode, [Z_OF[t] for t in usable])
    result = meta | {"output": output, "group": group, "counts": dict(counts), "charge": charge,
                     "all_atoms": sel is not None and len(sel[1]) == sel[2], "library": str(lib),
                     "pair_cutoff": round(info["rcut"] / 10.0 + pair_buffer, 4),
                     "message_passing": info["message_passing"], "backend": info["backend"]}
    return result


def _self_check(path: str, mode: str, zs: list[int]) -> None:
    """Load the written module as GROMACS will and evaluate it on a small frame."""
    import torch

    m = torch.jit.load(path)
    n = 4
    x = (torch.arange(3 * n, dtype=torch.float32).reshape(n, 3) * 0.037 + 0.1) % 1.5
    z = torch.tensor([zs[i % len(zs)] for i in range(n)], dtype=torch.int32)
    if mode == "periodic":
        e, f = m(x, z, torch.eye(3) * 1.5, torch.tensor([True, True, True]))
    elif mode == "pairs":
        pairs = torch.tensor([[i, j] for i in range(n) for j in range(i + 1, n)], dtype=torch.int32)
        e, f = m(x, z, pairs, torch.zeros(len(pairs), 3))
    else:
        e, f = m(x, z)
    if tuple(f.shape) != (n, 3) or not bool(torch.isfinite(e).all()) or not bool(torch.isfinite(f).all()):
        raise ModelFileError(f"the exported module gave no finite energy and forces on a test frame: "
                             f"energy {e}, forces of shape {tuple(f.shape)}")


def mdp_text(r: dict) -> str:
    """The nnpot-* MDP lines (one per line) and the advice for the topology, as MDP comments."""
    out = [f"; GROMACS NNPot lines for {r['output']} (dpmd export-gromacs; model {r['model']}, "
           f"{r['backend']}, type_map [{', '.join(r['type_map'])}], rcut {r['rcut'] / 10:g} nm)",
           "nnpot-active             = yes",
           f"nnpot-modelfile          = {r['output']}",
           f"nnpot-input-group        = {r['group'] or 'NN  ; <- the index group of the NN atoms'}",
           "nnpot-embedding          = mechanical"]
    out += [f"{f'nnpot-model-input{i}':<25s}= {name}" for i, name in enumerate(r["inputs"], 1)]
    if r["mode"] == "pairs":
        out.append(f"nnpot-pair-cutoff        = {r['pair_cutoff']:g}")
    notes = []
    if r["mode"] == "periodic":
        notes.append("pbc = xyz or xy: the model builds its own periodic images from the box each step.")
    elif r["mode"] == "pairs":
        notes.append(f"the pair cutoff is rcut + buffer; rlist must be >= {r['pair_cutoff']:g} nm, and "
                     "NNPot with a pair list runs on one rank (gmx mdrun -ntmpi 1).")
    else:
        notes.append("pbc = no: open boundaries (exported with --no-pbc).")
    if r["group"]:
        comp = ", ".join(f"{el} {n}" for el, n in sorted(r["counts"].items()))
        notes.append(f"group {r['group']}: {sum(r['counts'].values())} atoms ({comp}), every element in "
                     "the model's type_map.")
        q = r["charge"]
        if r["all_atoms"]:
            notes.append("every atom is NN: set the charges of these atoms to 0 in the topology "
                         "(mechanical embedding keeps classical charges, and the reaction-field/Ewald "
                         "exclusion correction would still act on NN-NN pairs).")
            if q is not None:
                notes.append(f"their classical charges now sum to {q:+.4f} e.")
        else:
            notes.append("mechanical embedding: NN-MM interactions stay classical (the NN atoms' charges "
                         "and LJ parameters in the topology); grompp excludes NN-NN nonbonded pairs and "
                         "drops bonded terms inside the region. Zero the NN atoms' charges only for a "
                         "region that must not interact electrostatically.")
            if q is not None:
                notes.append(f"classical charge of the group: {q:+.4f} e.")
    notes.append("NNPot adds no virial in this GROMACS: run NVE/NVT, not NPT. Use embedding = mechanical "
                 "(this module returns no MM forces for electrostatic-model).")
    notes.append(f"the module loads {r['library']} (its extension_libs record): re-export after "
                 "moving or reinstalling deepmd_md.")
    out += ["; " + n for n in notes]
    return "\n".join(out)


def cli(args) -> int:
    """`dpmd export-gromacs MODEL -o model.pt [...]`"""
    mode = "open" if args.no_pbc else "pairs" if args.pair_list else "periodic"
    r = export(args.model, args.output, mode=mode, fparam=args.fparam or (), aparam=args.aparam or (),
               index=args.index, group=args.group, topology=args.topology, structure=args.structure,
               pair_buffer=args.pair_buffer)
    print(mdp_text(r))
    return 0
