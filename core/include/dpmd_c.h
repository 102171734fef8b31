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

#include <stddef.h>

/* 2: dpmd_input.mapping; 3: size fields, dpmd_input.exchange (docs/core_contract.md) */
#define DPMD_C_API_VERSION 3

typedef struct dpmd_model dpmd_model;

/* The engine's ghost exchange, for message-passing models across domains (MPI ranks).
 * rows is a row-major [nloc + nghost, ncol] array of doubles indexed like dpmd_input.coord.
 *  forward: fill every ghost row from the row of the atom it is a copy of (its owner, on
 *           this rank or another); local rows are read, never written.
 *  reverse: add every ghost row into its owner's row (the adjoint of forward); ghost rows
 *           may be left with any value.
 * Both return 0 on success. Every rank calls them the same number of times with the same
 * ncol (they are collective), between its model's layers and in reverse order on the way
 * back; ncol is at most dpmd_model_exchange_width(). */
typedef struct dpmd_exchange {
  size_t size;  /* sizeof(dpmd_exchange) */
  void* ctx;
  int (*forward)(void* ctx, double* rows, int ncol);
  int (*reverse)(void* ctx, double* rows, int ncol);
} dpmd_exchange;

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
/* widest feature row a message-passing model exchanges (columns), 0 for other models */
int dpmd_model_exchange_width(const dpmd_model* model);
/* 1 if the model can run across domains through dpmd_input.exchange (message-passing models
 * frozen with the exchange op; models that pass no messages need none) */
int dpmd_model_supports_exchange(const dpmd_model* model);
/* 1 if the model can run across domains without an exchange, given ghosts out to
 * dpmd_model_receptive_field() and dpmd_input.ghost_cutoff (the widened ghost shell: message-passing
 * models that weigh atom energies, metadata atom_weight or exchange.weighted; models that pass no
 * messages need none); 0 for message-passing models frozen before that (freeze them again) */
int dpmd_model_supports_widened_shell(const dpmd_model* model);
/* how far an atom's energy depends on other atoms (Angstrom): rcut x layers for message-passing
 * models, rcut for others */
double dpmd_model_receptive_field(const dpmd_model* model);
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

/* Set size = sizeof(dpmd_input) (DPMD_INPUT_INIT does, and zeroes the rest): fields added
 * in later API versions then read as absent for callers built against older headers. */
typedef struct {
  size_t size;
  int nloc;                 /* local atoms */
  int nghost;               /* ghost atoms */
  const double* coord;      /* (nloc+nghost)*3 */
  const int* atype;         /* nloc+nghost engine types (see set_type_map) */
  /* Full neighbor list of the local atoms (LAMMPS layout): for ii < inum,
   * row ilist[ii] lists numneigh[ii] indices firstneigh[ii][k] into the
   * local+ghost arrays (bits above 29 are ignored, LAMMPS special bits).
   * Neighbors beyond rcut, in any order, are allowed.
   * ilist = NULL: the core builds the list itself (every atom within rcut, a
   * cell list), and when box is given and nghost is 0 it also adds the
   * periodic images of the local atoms (all three directions periodic): forces
   * and atom_virial then come back folded onto the nloc atoms (nloc rows). */
  int inum;
  const int* ilist;
  const int* numneigh;
  const int* const* firstneigh;
  const double* box;        /* 9 (cell rows) or NULL (see ilist = NULL) */
  const double* fparam;     /* dim_fparam values or NULL */
  const double* aparam;     /* nloc*dim_aparam values or NULL */
  /* Owner of every local+ghost atom: mapping[i] is the index, among the local
   * atoms 0..nloc-1, of the atom that ghost i is an image of (mapping[i] = i
   * for local atoms), or NULL.  For message-passing models
   * (dpmd_model_message_passing() != 0) in one domain, where every ghost is an
   * image of a local atom: between layers a ghost takes its owner's features,
   * so ghosts need only reach rcut.  Other models ignore it. */
  const int* mapping;
  /* The engine's ghost exchange (see dpmd_exchange), or NULL.  Message-passing
   * models need it or mapping (exchange wins when both are given): with it,
   * ghosts may be owned by other ranks and need only reach rcut. */
  const dpmd_exchange* exchange;
  /* How far the engine's ghost atoms reach beyond its local atoms (Angstrom), or 0 when not
   * known.  A message-passing model with ghosts but neither a mapping nor an exchange it can
   * use (none given, or the model has no exchange op) runs when this is at least
   * dpmd_model_receptive_field() and dpmd_model_supports_widened_shell(): the core then
   * evaluates local and ghost atoms alike and counts only the local atoms' energies (the ghost
   * shell replaces the exchange); otherwise the call fails, naming what to set. */
  double ghost_cutoff;
} dpmd_input;

#define DPMD_INPUT_INIT {sizeof(dpmd_input)}
#define DPMD_OUTPUT_INIT {sizeof(dpmd_output)}

typedef struct {
  size_t size;              /* sizeof(dpmd_output) */
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
