/* deepmd_md: the DeePMD-kit C API (function names, argument order and meaning as its public
 * API reference documents them), implemented over the deepmd_md core (core/include/dpmd_c.h).
 * A program written against DeePMD-kit's C API (a -DDPRC AMBER sander, CP2K, ...) links
 * libdeepmd_c.so from deepmd_md instead and runs every model format the core loads
 * (.pth, .pt2). Written for deepmd_md from the documented interface; docs/deepmd_c.md says
 * what is supported and what is not.
 *
 * Conventions (as DeePMD-kit's):
 *  - Units: Angstrom, eV; virial[3a+b] = sum_i r_ia F_ib (eV), cell rows are the box vectors.
 *  - natoms counts every atom passed; in the *NList* calls the last nghost of them are ghosts
 *    (neighbor-list copies of atoms: periodic images, atoms of other domains, MM atoms around a
 *    QM region). Only local atoms' energies are summed; force, atomic_energy and atomic_virial
 *    have natoms rows, ghost rows included: the engine adds ghost forces onto its own atoms.
 *    A ghost's atomic energy is 0.
 *  - Atom types index the model's type map (DP_DeepPotGetTypeMap); a negative type marks a
 *    virtual atom: it is left out and gets zero outputs. A type >= the number of model types
 *    is an error.
 *  - Outputs are caller-allocated; pass NULL for an output you do not need.
 *  - Nothing aborts: a failing call records a message that the object's CheckOK returns.
 *    Constructors return an object even when loading fails (CheckOK then holds the reason).
 *  - Strings returned by CheckOK, GetTypeMap and ReadFileToChar are new copies: free them
 *    with DP_DeleteChar.
 */
#ifndef DEEPMD_MD_DEEPMD_C_API_H
#define DEEPMD_MD_DEEPMD_C_API_H

#ifdef __cplusplus
extern "C" {
#else
#include <stdbool.h>
#endif

/* The DeePMD-kit C API version whose DeepPot / model-deviation / neighbor-list functions this
 * library provides (spin, tensor and dipole-charge-modifier functions are not provided). */
#define DP_C_API_VERSION 27
/* This implementation (deepmd_md over its core). */
#define DPMD_DEEPMD_C 1

/* ---- neighbor list (LAMMPS layout) -------------------------------------------------------- */
typedef struct DP_Nlist DP_Nlist;

/* inum rows: row ii is local atom ilist[ii], with numneigh[ii] neighbors firstneigh[ii][k]
 * indexing the natoms atoms of the compute call. The arrays are not copied here: keep them
 * alive while the list is used (a compute call with ago == 0 takes its own copy). */
extern DP_Nlist* DP_NewNlist(int inum, int* ilist, int* numneigh, int** firstneigh);
/* DP_NewNlist for engines that decompose space over MPI ranks (LAMMPS). The communication
 * arguments are not used: ghost forces come back in the ghosts' rows for the engine's reverse
 * communication, which is exact for models that pass no messages. Message-passing models need
 * every ghost's local owner (DP_NlistSetMapping), i.e. one rank. */
extern DP_Nlist* DP_NewNlist_comm(int inum, int* ilist, int* numneigh, int** firstneigh, int nswap,
                                  int* sendnum, int* recvnum, int* firstrecv, int** sendlist,
                                  int* sendproc, int* recvproc, void* world, int nprocs);
/* Neighbor indices are ANDed with mask before use (e.g. LAMMPS' NEIGHMASK). */
extern void DP_NlistSetMask(DP_Nlist* nl, int mask);
/* mapping[nall]: the local atom each atom is a copy of (itself for local atoms); needed by
 * message-passing models (DPA-2, DPA-3) with ghosts that are images of local atoms. Not copied. */
extern void DP_NlistSetMapping(DP_Nlist* nl, int* mapping);
extern void DP_DeleteNlist(DP_Nlist* nl);
extern const char* DP_NlistCheckOK(DP_Nlist* nl);

/* ---- base handles: DP_DeepPot* casts to DP_DeepBaseModel*, DP_DeepPotModelDevi* to
 * DP_DeepBaseModelDevi* (DeePMD-kit's C++ header does this) ----------------------------------- */
typedef struct DP_DeepBaseModel DP_DeepBaseModel;
typedef struct DP_DeepBaseModelDevi DP_DeepBaseModelDevi;
extern void DP_DeleteDeepBaseModel(DP_DeepBaseModel* dp);
extern void DP_DeleteDeepBaseModelDevi(DP_DeepBaseModelDevi* dp);
double DP_DeepBaseModelGetCutoff(DP_DeepBaseModel* dp);
int DP_DeepBaseModelGetNumbTypes(DP_DeepBaseModel* dp);
int DP_DeepBaseModelGetNumbTypesSpin(DP_DeepBaseModel* dp);
int DP_DeepBaseModelGetDimFParam(DP_DeepBaseModel* dp);
int DP_DeepBaseModelGetDimAParam(DP_DeepBaseModel* dp);
bool DP_DeepBaseModelIsAParamNAll(DP_DeepBaseModel* dp);
bool DP_DeepBaseModelHasDefaultFParam(DP_DeepBaseModel* dp);
const char* DP_DeepBaseModelGetTypeMap(DP_DeepBaseModel* dp);
const char* DP_DeepBaseModelCheckOK(DP_DeepBaseModel* dp);
double DP_DeepBaseModelDeviGetCutoff(DP_DeepBaseModelDevi* dp);
int DP_DeepBaseModelDeviGetNumbTypes(DP_DeepBaseModelDevi* dp);
int DP_DeepBaseModelDeviGetNumbTypesSpin(DP_DeepBaseModelDevi* dp);
int DP_DeepBaseModelDeviGetDimFParam(DP_DeepBaseModelDevi* dp);
int DP_DeepBaseModelDeviGetDimAParam(DP_DeepBaseModelDevi* dp);
bool DP_DeepBaseModelDeviIsAParamNAll(DP_DeepBaseModelDevi* dp);
bool DP_DeepBaseModelDeviHasDefaultFParam(DP_DeepBaseModelDevi* dp);
const char* DP_DeepBaseModelDeviCheckOK(DP_DeepBaseModelDevi* dp);

/* ---- one model --------------------------------------------------------------------------- */
typedef struct DP_DeepPot DP_DeepPot;

/* Load a frozen model (any format the deepmd_md core loads: .pth, .pt2). */
extern DP_DeepPot* DP_NewDeepPot(const char* c_model);
/* gpu_rank is ignored. c_file_content must be empty (as in DeePMD-kit, where this form's
 * content argument is unusable): use DP_NewDeepPotWithParam2. */
extern DP_DeepPot* DP_NewDeepPotWithParam(const char* c_model, const int gpu_rank,
                                          const char* c_file_content);
/* With size_file_content > 0 the model is read from c_file_content (the file's bytes; its
 * format is told by c_model's extension), else from the file c_model. gpu_rank is ignored. */
extern DP_DeepPot* DP_NewDeepPotWithParam2(const char* c_model, const int gpu_rank,
                                           const char* c_file_content, const int size_file_content);
extern void DP_DeleteDeepPot(DP_DeepPot* dp);

/* One frame, the library builds the neighbor list (and, with a cell, the periodic images):
 * coord[natoms*3], atype[natoms], cell[9] or NULL (open boundaries) ->
 * energy[1], force[natoms*3], virial[9], atomic_energy[natoms], atomic_virial[natoms*9]. */
extern void DP_DeepPotCompute(DP_DeepPot* dp, const int natom, const double* coord,
                              const int* atype, const double* cell, double* energy, double* force,
                              double* virial, double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotComputef(DP_DeepPot* dp, const int natom, const float* coord,
                               const int* atype, const float* cell, double* energy, float* force,
                               float* virial, float* atomic_energy, float* atomic_virial);

/* One frame with the engine's neighbor list: natoms = local + nghost atoms, the list covers the
 * local ones. ago == 0: the list is read (and kept); ago > 0: the list kept at the last
 * ago == 0 call is used and nlist is not read. Outputs as DP_DeepPotCompute, natoms rows. */
extern void DP_DeepPotComputeNList(DP_DeepPot* dp, const int natom, const double* coord,
                                   const int* atype, const double* cell, const int nghost,
                                   const DP_Nlist* nlist, const int ago, double* energy,
                                   double* force, double* virial, double* atomic_energy,
                                   double* atomic_virial);
extern void DP_DeepPotComputeNListf(DP_DeepPot* dp, const int natom, const float* coord,
                                    const int* atype, const float* cell, const int nghost,
                                    const DP_Nlist* nlist, const int ago, double* energy,
                                    float* force, float* virial, float* atomic_energy,
                                    float* atomic_virial);

/* nframes frames of natoms atoms each (the same atype): coord[nframes*natoms*3],
 * cell[nframes*9] or NULL, fparam[nframes*dim_fparam] or NULL,
 * aparam[nframes*natoms*dim_aparam] or NULL -> energy[nframes], force[nframes*natoms*3],
 * virial[nframes*9], atomic_energy[nframes*natoms], atomic_virial[nframes*natoms*9]. */
extern void DP_DeepPotCompute2(DP_DeepPot* dp, const int nframes, const int natom,
                               const double* coord, const int* atype, const double* cell,
                               const double* fparam, const double* aparam, double* energy,
                               double* force, double* virial, double* atomic_energy,
                               double* atomic_virial);
extern void DP_DeepPotComputef2(DP_DeepPot* dp, const int nframes, const int natom,
                                const float* coord, const int* atype, const float* cell,
                                const float* fparam, const float* aparam, double* energy,
                                float* force, float* virial, float* atomic_energy,
                                float* atomic_virial);
/* As DP_DeepPotCompute2 with the engine's list (every frame uses it); aparam holds the local
 * atoms only: [nframes*(natoms-nghost)*dim_aparam]. */
extern void DP_DeepPotComputeNList2(DP_DeepPot* dp, const int nframes, const int natom,
                                    const double* coord, const int* atype, const double* cell,
                                    const int nghost, const DP_Nlist* nlist, const int ago,
                                    const double* fparam, const double* aparam, double* energy,
                                    double* force, double* virial, double* atomic_energy,
                                    double* atomic_virial);
extern void DP_DeepPotComputeNListf2(DP_DeepPot* dp, const int nframes, const int natom,
                                     const float* coord, const int* atype, const float* cell,
                                     const int nghost, const DP_Nlist* nlist, const int ago,
                                     const float* fparam, const float* aparam, double* energy,
                                     float* force, float* virial, float* atomic_energy,
                                     float* atomic_virial);
/* Version 3: a charge/spin input per frame. deepmd_md models take none
 * (DP_DeepPotGetDimChgSpin is 0): charge_spin is not read. */
extern void DP_DeepPotCompute3(DP_DeepPot* dp, const int nframes, const int natoms,
                               const double* coord, const int* atype, const double* cell,
                               const double* fparam, const double* aparam,
                               const double* charge_spin, double* energy, double* force,
                               double* virial, double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotComputef3(DP_DeepPot* dp, const int nframes, const int natoms,
                                const float* coord, const int* atype, const float* cell,
                                const float* fparam, const float* aparam, const float* charge_spin,
                                double* energy, float* force, float* virial, float* atomic_energy,
                                float* atomic_virial);
extern void DP_DeepPotComputeNList3(DP_DeepPot* dp, const int nframes, const int natoms,
                                    const double* coord, const int* atype, const double* cell,
                                    const int nghost, const DP_Nlist* nlist, const int ago,
                                    const double* fparam, const double* aparam,
                                    const double* charge_spin, double* energy, double* force,
                                    double* virial, double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotComputeNListf3(DP_DeepPot* dp, const int nframes, const int natoms,
                                     const float* coord, const int* atype, const float* cell,
                                     const int nghost, const DP_Nlist* nlist, const int ago,
                                     const float* fparam, const float* aparam,
                                     const float* charge_spin, double* energy, float* force,
                                     float* virial, float* atomic_energy, float* atomic_virial);
/* As DP_DeepPotCompute2 with one atype row per frame: atype[nframes*natoms]. */
extern void DP_DeepPotComputeMixedType(DP_DeepPot* dp, const int nframes, const int natoms,
                                       const double* coord, const int* atype, const double* cell,
                                       const double* fparam, const double* aparam, double* energy,
                                       double* force, double* virial, double* atomic_energy,
                                       double* atomic_virial);
extern void DP_DeepPotComputeMixedTypef(DP_DeepPot* dp, const int nframes, const int natoms,
                                        const float* coord, const int* atype, const float* cell,
                                        const float* fparam, const float* aparam, double* energy,
                                        float* force, float* virial, float* atomic_energy,
                                        float* atomic_virial);

double DP_DeepPotGetCutoff(DP_DeepPot* dp);
int DP_DeepPotGetNumbTypes(DP_DeepPot* dp);
int DP_DeepPotGetNumbTypesSpin(DP_DeepPot* dp);          /* 0 */
int DP_DeepPotGetDimFParam(DP_DeepPot* dp);
int DP_DeepPotGetDimAParam(DP_DeepPot* dp);
int DP_DeepPotGetDimChgSpin(DP_DeepPot* dp);             /* 0 */
bool DP_DeepPotIsAParamNAll(DP_DeepPot* dp);             /* false: aparam covers local atoms */
bool DP_DeepPotHasDefaultFParam(DP_DeepPot* dp);         /* false */
/* The model's element names separated by single spaces, e.g. "O H". Free with DP_DeleteChar. */
const char* DP_DeepPotGetTypeMap(DP_DeepPot* dp);
/* The message of the last failure ("" when the last call succeeded). Free with DP_DeleteChar. */
const char* DP_DeepPotCheckOK(DP_DeepPot* dp);

/* ---- several models evaluated on the same atoms (model deviation) ------------------------- */
typedef struct DP_DeepPotModelDevi DP_DeepPotModelDevi;

/* The models must share their type map and fparam/aparam sizes. */
extern DP_DeepPotModelDevi* DP_NewDeepPotModelDevi(const char** c_models, int n_models);
/* n_file_contents == 0: read the files; else one content per model (see WithParam2). */
extern DP_DeepPotModelDevi* DP_NewDeepPotModelDeviWithParam(
    const char** c_models, const int n_models, const int gpu_rank, const char** c_file_contents,
    const int n_file_contents, const int* size_file_contents);
extern void DP_DeleteDeepPotModelDevi(DP_DeepPotModelDevi* dp);

/* As the DP_DeepPot calls for one frame (nframes must be 1), every output holding all models,
 * model after model: energy[nmodels], force[nmodels*natoms*3], virial[nmodels*9],
 * atomic_energy[nmodels*natoms], atomic_virial[nmodels*natoms*9]. */
extern void DP_DeepPotModelDeviCompute(DP_DeepPotModelDevi* dp, const int natom,
                                       const double* coord, const int* atype, const double* cell,
                                       double* energy, double* force, double* virial,
                                       double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotModelDeviComputef(DP_DeepPotModelDevi* dp, const int natom,
                                        const float* coord, const int* atype, const float* cell,
                                        double* energy, float* force, float* virial,
                                        float* atomic_energy, float* atomic_virial);
extern void DP_DeepPotModelDeviCompute2(DP_DeepPotModelDevi* dp, const int nframes,
                                        const int natoms, const double* coord, const int* atype,
                                        const double* cell, const double* fparam,
                                        const double* aparam, double* energy, double* force,
                                        double* virial, double* atomic_energy,
                                        double* atomic_virial);
extern void DP_DeepPotModelDeviComputef2(DP_DeepPotModelDevi* dp, const int nframes,
                                         const int natoms, const float* coord, const int* atype,
                                         const float* cell, const float* fparam,
                                         const float* aparam, double* energy, float* force,
                                         float* virial, float* atomic_energy,
                                         float* atomic_virial);
extern void DP_DeepPotModelDeviCompute3(DP_DeepPotModelDevi* dp, const int nframes,
                                        const int natoms, const double* coord, const int* atype,
                                        const double* cell, const double* fparam,
                                        const double* aparam, const double* charge_spin,
                                        double* energy, double* force, double* virial,
                                        double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotModelDeviComputef3(DP_DeepPotModelDevi* dp, const int nframes,
                                         const int natoms, const float* coord, const int* atype,
                                         const float* cell, const float* fparam,
                                         const float* aparam, const float* charge_spin,
                                         double* energy, float* force, float* virial,
                                         float* atomic_energy, float* atomic_virial);
extern void DP_DeepPotModelDeviComputeNList(DP_DeepPotModelDevi* dp, const int natom,
                                            const double* coord, const int* atype,
                                            const double* cell, const int nghost,
                                            const DP_Nlist* nlist, const int ago, double* energy,
                                            double* force, double* virial, double* atomic_energy,
                                            double* atomic_virial);
extern void DP_DeepPotModelDeviComputeNListf(DP_DeepPotModelDevi* dp, const int natom,
                                             const float* coord, const int* atype,
                                             const float* cell, const int nghost,
                                             const DP_Nlist* nlist, const int ago, double* energy,
                                             float* force, float* virial, float* atomic_energy,
                                             float* atomic_virial);
extern void DP_DeepPotModelDeviComputeNList2(DP_DeepPotModelDevi* dp, const int nframes,
                                             const int natoms, const double* coord,
                                             const int* atype, const double* cell,
                                             const int nghost, const DP_Nlist* nlist,
                                             const int ago, const double* fparam,
                                             const double* aparam, double* energy, double* force,
                                             double* virial, double* atomic_energy,
                                             double* atomic_virial);
extern void DP_DeepPotModelDeviComputeNListf2(DP_DeepPotModelDevi* dp, const int nframes,
                                              const int natoms, const float* coord,
                                              const int* atype, const float* cell,
                                              const int nghost, const DP_Nlist* nlist,
                                              const int ago, const float* fparam,
                                              const float* aparam, double* energy, float* force,
                                              float* virial, float* atomic_energy,
                                              float* atomic_virial);
extern void DP_DeepPotModelDeviComputeNList3(DP_DeepPotModelDevi* dp, const int nframes,
                                             const int natoms, const double* coord,
                                             const int* atype, const double* cell,
                                             const int nghost, const DP_Nlist* nlist,
                                             const int ago, const double* fparam,
                                             const double* aparam, const double* charge_spin,
                                             double* energy, double* force, double* virial,
                                             double* atomic_energy, double* atomic_virial);
extern void DP_DeepPotModelDeviComputeNListf3(DP_DeepPotModelDevi* dp, const int nframes,
                                              const int natoms, const float* coord,
                                              const int* atype, const float* cell,
                                              const int nghost, const DP_Nlist* nlist,
                                              const int ago, const float* fparam,
                                              const float* aparam, const float* charge_spin,
                                              double* energy, float* force, float* virial,
                                              float* atomic_energy, float* atomic_virial);

/* The largest cutoff of the models (an engine's list must reach it). */
double DP_DeepPotModelDeviGetCutoff(DP_DeepPotModelDevi* dp);
int DP_DeepPotModelDeviGetNumbTypes(DP_DeepPotModelDevi* dp);
int DP_DeepPotModelDeviGetNumbTypesSpin(DP_DeepPotModelDevi* dp);
int DP_DeepPotModelDeviGetDimFParam(DP_DeepPotModelDevi* dp);
int DP_DeepPotModelDeviGetDimAParam(DP_DeepPotModelDevi* dp);
int DP_DeepPotModelDeviGetDimChgSpin(DP_DeepPotModelDevi* dp);
bool DP_DeepPotModelDeviIsAParamNAll(DP_DeepPotModelDevi* dp);
bool DP_DeepPotModelDeviHasDefaultFParam(DP_DeepPotModelDevi* dp);
const char* DP_DeepPotModelDeviCheckOK(DP_DeepPotModelDevi* dp);

/* ---- utilities ---------------------------------------------------------------------------- */
/* Prints what this library is (each line prefixed by c_pre) to standard output. */
extern void DP_PrintSummary(const char* c_pre);
/* A file's bytes as a new string (free with DP_DeleteChar); "" when it cannot be read. */
const char* DP_ReadFileToChar(const char* c_model);
/* Same, with *size = its length; when it cannot be read, the message is returned and *size is
 * minus the message's length. */
const char* DP_ReadFileToChar2(const char* c_model, int* size);
void DP_DeleteChar(const char* c_str);

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif
