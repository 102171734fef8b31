/* deepmd_md C API: load a frozen deep potential and evaluate it on a local
 * + ghost atom configuration with an engine-provided neighbor list.
 *
 * Conventions
 *  - Errors never abort: functions return NULL or a non-zero status and the
 *    message is available from dpmd_last_error() (thread-local).
 *  - Units are the model's (deepmd_md: Angstrom, eV; i.e. LAMMPS "metal").
 *  - Arrays are row-major C arrays of double / int.
 *  - Atoms 0..nloc-1 are local (their energies are summed), atoms
 *    nloc..nloc+nghost-1 are ghosts (periodic images or atoms owned by other
 *    ranks).  Forces and per-atom virials are returned for ghosts too: the
 *    engine folds them back onto the owners (LAMMPS reverse communication).
 *  - virial[3*a+b] = sum_i r_{i,a} F_{i,b} over local+ghost atoms
 *    (= -dE/d(strain_ab); LAMMPS sign convention, units of energy).
 */
#ifndef DPMD_C_H
#define DPMD_C_H

#ifdef __cplusplus
extern "C" {
#endif

#define DPMD_C_API_VERSION 2  /* 2: dpmd_input.mapping */

typedef struct dpmd_model dpmd_model;

/* Last error message of this thread ("" when none). */
const char* dpmd_last_error(void);

/* Load a frozen model.  The backend is chosen by file type: ".pth"
 * (TorchScript) or ".pt2" (AOTInductor package).  Returns NULL on error. */
dpmd_model* dpmd_model_load(const char* path);
void dpmd_model_free(dpmd_model* model);

/* Metadata. */
const char* dpmd_model_backend(const dpmd_model* model);   /* "torchscript", "aotinductor" */
const char* dpmd_model_metadata_json(const dpmd_model* model);
int dpmd_model_ntypes(const dpmd_model* model);
const char* dpmd_model_type_name(const dpmd_model* model, int type); /* NULL if out of range */
/* index of an element name in the model's type_map, -1 if absent */
int dpmd_model_type_index(const dpmd_model* model, const char* name);
double dpmd_model_rcut(const dpmd_model* model);
/* how far ghost atoms must extend: rcut unless the metadata asks for more
 * (message-passing models with a mapping need only rcut, see dpmd_input) */
double dpmd_model_ghost_cutoff(const dpmd_model* model);
int dpmd_model_nsel(const dpmd_model* model);              /* sum of sel */
int dpmd_model_dim_fparam(const dpmd_model* model);
int dpmd_model_dim_aparam(const dpmd_model* model);
int dpmd_model_message_passing(const dpmd_model* model);
const char* dpmd_model_precision(const dpmd_model* model); /* "float64", "float32" */

/* Engine type -> model type mapping: atype values passed to dpmd_compute
 * are looked up as model_type = map[atype]; map[t] = -1 marks an engine
 * type that is not mapped (an atom of that type is an error).  Without a
 * map atype holds model types directly. Returns 0 on success. */
int dpmd_model_set_type_map(dpmd_model* model, int n, const int* map);

/* Threads per model (<=0: keep default, which is OMP_NUM_THREADS if set,
 * else 1). Process-wide; a model takes the count when it is loaded: its
 * chunks of local atoms then run on that many worker threads, one model
 * call per thread (message-passing models: the framework's intra-op
 * threads instead). */
int dpmd_set_num_threads(int intra_op, int inter_op);

typedef struct {
  int nloc;                 /* local atoms */
  int nghost;               /* ghost atoms */
  const double* coord;      /* (nloc+nghost)*3 */
  const int* atype;         /* nloc+nghost engine types (see set_type_map) */
  /* Full neighbor list of the local atoms (LAMMPS layout): for ii < inum,
   * row ilist[ii] lists numneigh[ii] indices firstneigh[ii][k] into the
   * local+ghost arrays (bits above 29 are ignored, LAMMPS special bits).
   * Neighbors beyond rcut, in any order, are allowed. */
  int inum;
  const int* ilist;
  const int* numneigh;
  const int* const* firstneigh;
  const double* box;        /* 9 (cell rows) or NULL; informational */
  const double* fparam;     /* dim_fparam values or NULL */
  const double* aparam;     /* nloc*dim_aparam values or NULL */
  /* Owner of every local+ghost atom: mapping[i] is the index, among the local
   * atoms 0..nloc-1, of the atom that ghost i is an image of (mapping[i] = i
   * for local atoms), or NULL.  Required for message-passing models
   * (dpmd_model_message_passing() != 0) on one rank, where every ghost is an
   * image of a local atom: between layers a ghost takes its owner's features,
   * so ghosts need only reach rcut (dpmd_model_ghost_cutoff()).  With NULL and
   * a message-passing model dpmd_compute fails with a clear error; several
   * ranks (ghosts owned elsewhere) are not supported yet (issue 13).  Other
   * models ignore it.  Zero-initialise the struct (dpmd_input in = {0};) so
   * that fields added in later API versions stay NULL. */
  const int* mapping;
} dpmd_input;

typedef struct {
  double energy;            /* sum of local atom energies */
  double virial[9];
  double* force;            /* out: (nloc+nghost)*3, required (overwritten) */
  double* atom_energy;      /* out: nloc, optional (NULL to skip) */
  double* atom_virial;      /* out: (nloc+nghost)*9, optional (NULL to skip) */
} dpmd_output;

/* Evaluate. Returns 0 on success. */
int dpmd_compute(dpmd_model* model, const dpmd_input* in, dpmd_output* out);

#ifdef __cplusplus
}
#endif
#endif
