"""Names of every field that flows between data, model, backends and engines, with its shape.

nf: frames; nat: atoms of a system; nloc: local atoms; nall: local + ghost atoms;
nnei: neighbor slots (sum of `sel`); nt: number of types. Units: Å, eV, eV/Å, virial in eV.
Box rows are cell vectors. Virial[a, b] = sum_i r_i,a F_i,b = -dE/d(strain)_ab.
"""

# -- inputs of `forward` ------------------------------------------------------
COORD = "coord"  # [nf, nat, 3] float
ATYPE = "atype"  # [nf, nat] int64, model type index
BOX = "box"  # [nf, 9] float, or None for non-periodic systems

# -- inputs of `forward_lower` ------------------------------------------------
EXT_COORD = "extended_coord"  # [nf, nall, 3] float
EXT_ATYPE = "extended_atype"  # [nf, nall] int64
NLIST = "nlist"  # [nf, nloc, nnei] int64 index into extended atoms, -1 = empty
MAPPING = "mapping"  # [nf, nall] int64 owner index (< nloc) of each extended atom
SHIFT = "shift"  # [nf, nall, 3] float, image shift: ext_coord = coord[mapping] + shift
NLIST_WIDTHS = "nlist_widths"  # tuple[int, ...] slots per type kept in a trimmed nlist (<= sel)
TYPE_SPLIT = "type_split"  # tuple[int, ...] atoms per type when local atoms are sorted by type
SYSTEM_INDEX = "system_index"  # [nf] int64, which system a batch frame comes from
FRAME_INDEX = "frame_index"  # [nf] int64, frame index inside its system
FIND_ENERGY = "find_energy"  # float 0/1
FIND_FORCE = "find_force"  # float 0/1
STATIC_PREP = (TYPE_SPLIT, NLIST_WIDTHS)  # prep entries that are compile-time constants

# -- outputs of `forward_lower` -----------------------------------------------
ATOM_ENERGY = "atom_energy"  # [nf, nloc]
ENERGY = "energy"  # [nf]
EXT_FORCE = "extended_force"  # [nf, nall, 3]
VIRIAL = "virial"  # [nf, 9]
EXT_VIRIAL = "extended_virial"  # [nf, nall, 9], per-atom virial on extended atoms

# -- outputs of `forward` -----------------------------------------------------
FORCE = "force"  # [nf, nat, 3]
ATOM_VIRIAL = "atom_virial"  # [nf, nat, 9]

# -- labels in data (deepmd/npy names) ----------------------------------------
LABEL_ENERGY = "energy"  # [nf]
LABEL_FORCE = "force"  # [nf, nat, 3]
LABEL_VIRIAL = "virial"  # [nf, 9]
FIND_VIRIAL = "find_virial"  # float 0/1: whether the system has virial labels

# -- descriptor internals -----------------------------------------------------
ENV_MAT = "env_mat"  # [nf, nloc, nnei, 4] (se_e2_a) or [..., 1] (se_e2_r), normalised
SW = "switch"  # [nf, nloc, nnei] smooth switch, 0 beyond rcut and for empty slots
DESCRIPTOR = "descriptor"  # [nf, nloc, dim_descrpt]

# -- statistics ----------------------------------------------------------------
DAVG = "davg"  # [nt, 4] env-matrix mean per center type (per component)
DSTD = "dstd"  # [nt, 4] env-matrix std per center type
BIAS_ATOM_E = "bias_atom_e"  # [nt] per-type energy bias
