// deepmd_md's DeePMD-kit C API: every DP_DeepPot* / DP_DeepPotModelDevi* compute call funnels into
// compute<T>() below, which runs one frame at a time through dpmd_compute (core/include/dpmd_c.h)
// for each model. What it adds to the core: float <-> double, frames, the neighbor list kept
// between ago == 0 calls, virtual atoms (negative types, left out), and DeePMD-kit's output
// layout (natoms rows with ghosts, zero atomic energy on ghosts, models one after another).
#include <stdexcept>
#include <string>

#include "internal.h"

namespace dpc {
namespace {

constexpr int CORE_MASK = 0x1FFFFFFF;  // the core ignores higher bits (LAMMPS special bonds)
// ilist for an empty list: the core reads ilist = NULL as "no list, build one", an empty
// vector's data() may be NULL
const int NO_ROWS[1] = {0};

// Outputs of one call; slot s is frame s (one model) or model s (one frame).
template <class T>
struct Out {
  double* energy;
  T* force;
  T* virial;
  T* atom_energy;
  T* atom_virial;
};

// Copy the engine's list (ago == 0, or nothing kept yet); later calls reuse the copy.
void take_list(Handle* h, const DP_Nlist* nl, int ago, int natoms) {
  ListCopy& L = h->list;
  if (ago > 0 && L.valid) return;
  L.valid = false;
  if (!nl) throw std::runtime_error("the neighbor list (DP_Nlist*) is NULL");
  if (nl->inum < 0) throw std::runtime_error("the neighbor list has inum < 0");
  if (nl->inum > 0 && (!nl->ilist || !nl->numneigh || !nl->firstneigh))
    throw std::runtime_error("the neighbor list's ilist, numneigh or firstneigh is NULL");
  L.ilist.assign(nl->ilist, nl->ilist + nl->inum);
  L.numneigh.assign(nl->numneigh, nl->numneigh + nl->inum);
  L.start.assign(size_t(nl->inum) + 1, 0);
  L.neigh.clear();
  for (int ii = 0; ii < nl->inum; ++ii) {
    const int n = L.numneigh[ii];
    if (n < 0) throw std::runtime_error("the neighbor list has a negative numneigh");
    if (n > 0 && !nl->firstneigh[ii]) throw std::runtime_error("the neighbor list's firstneigh[" + std::to_string(ii) + "] is NULL");
    for (int k = 0; k < n; ++k) L.neigh.push_back(nl->firstneigh[ii][k] & nl->mask & CORE_MASK);
    L.start[ii + 1] = int(L.neigh.size());
  }
  L.mapping.clear();
  if (nl->mapping) L.mapping.assign(nl->mapping, nl->mapping + natoms);
  L.valid = true;
}

// One frame (double inputs, the caller's indexing) through every model, into slots slot0...
template <class T>
void run_frame(Handle* h, int natoms, int nghost, bool listed, const double* coord, const int* atype,
               const double* box, const double* fparam, const double* aparam, int slot0, const Out<T>& out) {
  Work& W = h->work;
  const int nloc = natoms - nghost;
  int nvirt = 0;
  for (int i = 0; i < natoms; ++i) {
    if (atype[i] >= h->ntypes)
      throw std::runtime_error("atom " + std::to_string(i) + " has type " + std::to_string(atype[i]) + ", but the model has " +
                               std::to_string(h->ntypes) + " types (" + h->type_map +
                               "): valid types are 0.." + std::to_string(h->ntypes - 1) +
                               " (a negative type marks a virtual atom, left out)");
    if (atype[i] < 0) ++nvirt;
  }
  // Virtual atoms: the core sees the real ones only, compacted (locals stay first).
  W.fwd.resize(natoms);
  int nloc_r = 0, nall_r = 0;
  for (int i = 0; i < natoms; ++i) {
    W.fwd[i] = atype[i] < 0 ? -1 : nall_r++;
    if (i < nloc && atype[i] >= 0) ++nloc_r;
  }
  const double* c = coord;
  const int* t = atype;
  const double* ap = aparam;
  if (nvirt) {
    W.ccoord.resize(3 * size_t(nall_r));
    W.catype.resize(nall_r);
    W.caparam.clear();
    for (int i = 0; i < natoms; ++i) {
      const int k = W.fwd[i];
      if (k < 0) continue;
      for (int d = 0; d < 3; ++d) W.ccoord[3 * size_t(k) + d] = coord[3 * size_t(i) + d];
      W.catype[k] = atype[i];
      if (aparam && i < nloc)
        W.caparam.insert(W.caparam.end(), aparam + size_t(i) * h->dim_aparam, aparam + size_t(i + 1) * h->dim_aparam);
    }
    c = W.ccoord.data();
    t = W.catype.data();
    ap = aparam ? W.caparam.data() : nullptr;
  }

  dpmd_input in = DPMD_INPUT_INIT;
  in.nloc = nloc_r;
  in.nghost = nall_r - nloc_r;
  in.coord = c;
  in.atype = t;
  in.box = box;
  in.fparam = fparam;
  in.aparam = ap;
  if (listed) {
    const ListCopy& L = h->list;
    const int inum = int(L.ilist.size());
    W.ilist.clear();
    W.numneigh.clear();
    W.firstneigh.clear();
    W.neigh.clear();
    if (!nvirt) {
      for (int ii = 0; ii < inum; ++ii) W.firstneigh.push_back(L.neigh.data() + L.start[ii]);
      in.inum = inum;
      in.ilist = inum ? L.ilist.data() : NO_ROWS;
      in.numneigh = L.numneigh.data();
      if (!L.mapping.empty()) in.mapping = L.mapping.data();
    } else {
      W.neigh.reserve(L.neigh.size());
      W.start.clear();
      for (int ii = 0; ii < inum; ++ii) {
        const int i = L.ilist[ii];
        if (i < 0 || i >= nloc) throw std::runtime_error("neighbor list row for atom " + std::to_string(i) + ", which is not local");
        if (W.fwd[i] < 0) continue;
        W.ilist.push_back(W.fwd[i]);
        W.start.push_back(int(W.neigh.size()));
        for (int k = L.start[ii]; k < L.start[ii + 1]; ++k) {
          const int j = L.neigh[k];
          if (j >= natoms) throw std::runtime_error("neighbor index " + std::to_string(j) + " beyond the " + std::to_string(natoms) + " atoms");
          if (W.fwd[j] >= 0) W.neigh.push_back(W.fwd[j]);
        }
        W.numneigh.push_back(int(W.neigh.size()) - W.start.back());
      }
      for (size_t r = 0; r < W.ilist.size(); ++r) W.firstneigh.push_back(W.neigh.data() + W.start[r]);
      in.inum = int(W.ilist.size());
      in.ilist = W.ilist.empty() ? NO_ROWS : W.ilist.data();
      in.numneigh = W.numneigh.data();
      if (!L.mapping.empty()) {
        W.mapping.assign(nall_r, 0);
        for (int i = 0; i < natoms; ++i)
          if (W.fwd[i] >= 0) {
            const int o = L.mapping[i];
            if (o < 0 || o >= natoms || W.fwd[o] < 0) throw std::runtime_error("mapping of atom " + std::to_string(i) + " is not a real local atom");
            W.mapping[W.fwd[i]] = W.fwd[o];
          }
        in.mapping = W.mapping.data();
      }
    }
    in.firstneigh = W.firstneigh.data();
  }  // else ilist = NULL: the core lists neighbors itself (and builds images when box is given)

  dpmd_output o = DPMD_OUTPUT_INIT;
  W.force.assign(3 * size_t(nall_r), 0.0);
  o.force = W.force.data();
  if (out.atom_energy) {
    W.atom_energy.assign(nloc_r, 0.0);
    o.atom_energy = W.atom_energy.data();
  }
  if (out.atom_virial) {
    W.atom_virial.assign(9 * size_t(nall_r), 0.0);
    o.atom_virial = W.atom_virial.data();
  }
  for (size_t m = 0; m < h->models.size(); ++m) {
    if (dpmd_compute(h->models[m], &in, &o) != 0) {
      std::string msg = dpmd_last_error();
      if (listed && !in.mapping && dpmd_model_message_passing(h->models[m]))
        msg += " [through the DeePMD-kit C API: give each ghost's local owner with DP_NlistSetMapping when the "
               "ghosts are periodic images, or let the library build the images (DP_DeepPotCompute with a cell)]";
      if (h->models.size() > 1) msg = "model " + std::to_string(m) + ": " + msg;
      throw std::runtime_error(msg);
    }
    const size_t s = size_t(slot0) + m;
    if (out.energy) out.energy[s] = o.energy;
    if (out.virial)
      for (int k = 0; k < 9; ++k) out.virial[9 * s + k] = T(o.virial[k]);
    for (int i = 0; i < natoms; ++i) {
      const int k = W.fwd[i];  // -1: virtual, zero outputs
      if (out.force)
        for (int d = 0; d < 3; ++d) out.force[(s * natoms + i) * 3 + d] = k < 0 ? T(0) : T(W.force[3 * size_t(k) + d]);
      if (out.atom_energy) out.atom_energy[s * natoms + i] = k < 0 || k >= nloc_r ? T(0) : T(W.atom_energy[k]);
      if (out.atom_virial)
        for (int d = 0; d < 9; ++d)
          out.atom_virial[(s * natoms + i) * 9 + d] = k < 0 ? T(0) : T(W.atom_virial[9 * size_t(k) + d]);
    }
  }
}

template <class T>
void to_double(const T* src, size_t n, std::vector<double>& dst) {
  dst.resize(n);
  for (size_t i = 0; i < n; ++i) dst[i] = double(src[i]);
}

// The body of every compute entry point. devi: outputs per model (one frame); mixed: one
// atype row per frame; listed: the engine's neighbor list (nghost, nlist, ago) is used.
template <class T>
void compute(Handle* h, bool devi, int nframes, int natoms, const T* coord, const int* atype, bool mixed,
             const T* cell, bool listed, int nghost, const DP_Nlist* nl, int ago, const T* fparam, const T* aparam,
             const Out<T>& out) {
  if (!h) return;
  h->error.clear();
  try {
    if (!h->ok()) throw std::runtime_error("the model was not loaded: " + h->load_error);
    if (nframes < 0 || natoms < 0) throw std::runtime_error("negative number of frames or atoms");
    if (!listed) nghost = 0;
    if (nghost < 0 || nghost > natoms)
      throw std::runtime_error("nghost = " + std::to_string(nghost) + " is not within 0..natoms = " + std::to_string(natoms));
    if (devi && nframes > 1)
      throw std::runtime_error("model deviation evaluates one frame per call (nframes = " + std::to_string(nframes) + ")");
    if (natoms > 0 && (!coord || !atype)) throw std::runtime_error("coord or atype is NULL");
    if (listed) take_list(h, nl, ago, natoms);
    Work& W = h->work;
    const int nloc = natoms - nghost;
    const size_t arow = size_t(listed ? nloc : natoms) * h->dim_aparam;
    for (int f = 0; f < nframes; ++f) {
      to_double(coord + 3 * size_t(f) * natoms, 3 * size_t(natoms), W.coord);
      if (cell) to_double(cell + 9 * size_t(f), 9, W.box);
      if (fparam) to_double(fparam + size_t(f) * h->dim_fparam, h->dim_fparam, W.fparam);
      if (aparam) to_double(aparam + f * arow, arow, W.aparam);
      run_frame<T>(h, natoms, nghost, listed, W.coord.data(), atype + (mixed ? size_t(f) * natoms : 0),
                   cell ? W.box.data() : nullptr, fparam ? W.fparam.data() : nullptr,
                   aparam ? W.aparam.data() : nullptr, f, out);
    }
  } catch (const std::exception& e) {
    h->error = e.what();
  }
}

}  // namespace
}  // namespace dpc

using dpc::compute;
using dpc::Out;

extern "C" {

// ---- DP_DeepPot: the library's own list (and images) --------------------------------------
void DP_DeepPotCompute(DP_DeepPot* dp, const int natom, const double* coord, const int* atype, const double* cell,
                       double* energy, double* force, double* virial, double* ae, double* av) {
  compute<double>(dp, false, 1, natom, coord, atype, false, cell, false, 0, nullptr, 0, nullptr, nullptr,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotComputef(DP_DeepPot* dp, const int natom, const float* coord, const int* atype, const float* cell,
                        double* energy, float* force, float* virial, float* ae, float* av) {
  compute<float>(dp, false, 1, natom, coord, atype, false, cell, false, 0, nullptr, 0, nullptr, nullptr,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotCompute2(DP_DeepPot* dp, const int nframes, const int natom, const double* coord, const int* atype,
                        const double* cell, const double* fparam, const double* aparam, double* energy, double* force,
                        double* virial, double* ae, double* av) {
  compute<double>(dp, false, nframes, natom, coord, atype, false, cell, false, 0, nullptr, 0, fparam, aparam,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotComputef2(DP_DeepPot* dp, const int nframes, const int natom, const float* coord, const int* atype,
                         const float* cell, const float* fparam, const float* aparam, double* energy, float* force,
                         float* virial, float* ae, float* av) {
  compute<float>(dp, false, nframes, natom, coord, atype, false, cell, false, 0, nullptr, 0, fparam, aparam,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotCompute3(DP_DeepPot* dp, const int nframes, const int natoms, const double* coord, const int* atype,
                        const double* cell, const double* fparam, const double* aparam, const double*,
                        double* energy, double* force, double* virial, double* ae, double* av) {
  DP_DeepPotCompute2(dp, nframes, natoms, coord, atype, cell, fparam, aparam, energy, force, virial, ae, av);
}
void DP_DeepPotComputef3(DP_DeepPot* dp, const int nframes, const int natoms, const float* coord, const int* atype,
                         const float* cell, const float* fparam, const float* aparam, const float*, double* energy,
                         float* force, float* virial, float* ae, float* av) {
  DP_DeepPotComputef2(dp, nframes, natoms, coord, atype, cell, fparam, aparam, energy, force, virial, ae, av);
}
void DP_DeepPotComputeMixedType(DP_DeepPot* dp, const int nframes, const int natoms, const double* coord,
                                const int* atype, const double* cell, const double* fparam, const double* aparam,
                                double* energy, double* force, double* virial, double* ae, double* av) {
  compute<double>(dp, false, nframes, natoms, coord, atype, true, cell, false, 0, nullptr, 0, fparam, aparam,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotComputeMixedTypef(DP_DeepPot* dp, const int nframes, const int natoms, const float* coord,
                                 const int* atype, const float* cell, const float* fparam, const float* aparam,
                                 double* energy, float* force, float* virial, float* ae, float* av) {
  compute<float>(dp, false, nframes, natoms, coord, atype, true, cell, false, 0, nullptr, 0, fparam, aparam,
                 {energy, force, virial, ae, av});
}

// ---- DP_DeepPot: the engine's neighbor list ------------------------------------------------
void DP_DeepPotComputeNList(DP_DeepPot* dp, const int natom, const double* coord, const int* atype,
                            const double* cell, const int nghost, const DP_Nlist* nlist, const int ago,
                            double* energy, double* force, double* virial, double* ae, double* av) {
  compute<double>(dp, false, 1, natom, coord, atype, false, cell, true, nghost, nlist, ago, nullptr, nullptr,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotComputeNListf(DP_DeepPot* dp, const int natom, const float* coord, const int* atype,
                             const float* cell, const int nghost, const DP_Nlist* nlist, const int ago,
                             double* energy, float* force, float* virial, float* ae, float* av) {
  compute<float>(dp, false, 1, natom, coord, atype, false, cell, true, nghost, nlist, ago, nullptr, nullptr,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotComputeNList2(DP_DeepPot* dp, const int nframes, const int natom, const double* coord,
                             const int* atype, const double* cell, const int nghost, const DP_Nlist* nlist,
                             const int ago, const double* fparam, const double* aparam, double* energy,
                             double* force, double* virial, double* ae, double* av) {
  compute<double>(dp, false, nframes, natom, coord, atype, false, cell, true, nghost, nlist, ago, fparam, aparam,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotComputeNListf2(DP_DeepPot* dp, const int nframes, const int natom, const float* coord,
                              const int* atype, const float* cell, const int nghost, const DP_Nlist* nlist,
                              const int ago, const float* fparam, const float* aparam, double* energy,
                              float* force, float* virial, float* ae, float* av) {
  compute<float>(dp, false, nframes, natom, coord, atype, false, cell, true, nghost, nlist, ago, fparam, aparam,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotComputeNList3(DP_DeepPot* dp, const int nframes, const int natoms, const double* coord,
                             const int* atype, const double* cell, const int nghost, const DP_Nlist* nlist,
                             const int ago, const double* fparam, const double* aparam, const double*,
                             double* energy, double* force, double* virial, double* ae, double* av) {
  DP_DeepPotComputeNList2(dp, nframes, natoms, coord, atype, cell, nghost, nlist, ago, fparam, aparam, energy, force,
                          virial, ae, av);
}
void DP_DeepPotComputeNListf3(DP_DeepPot* dp, const int nframes, const int natoms, const float* coord,
                              const int* atype, const float* cell, const int nghost, const DP_Nlist* nlist,
                              const int ago, const float* fparam, const float* aparam, const float*,
                              double* energy, float* force, float* virial, float* ae, float* av) {
  DP_DeepPotComputeNListf2(dp, nframes, natoms, coord, atype, cell, nghost, nlist, ago, fparam, aparam, energy,
                           force, virial, ae, av);
}

// ---- DP_DeepPotModelDevi: outputs model after model -----------------------------------------
void DP_DeepPotModelDeviCompute2(DP_DeepPotModelDevi* dp, const int nframes, const int natoms, const double* coord,
                                 const int* atype, const double* cell, const double* fparam, const double* aparam,
                                 double* energy, double* force, double* virial, double* ae, double* av) {
  compute<double>(dp, true, nframes, natoms, coord, atype, false, cell, false, 0, nullptr, 0, fparam, aparam,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotModelDeviComputef2(DP_DeepPotModelDevi* dp, const int nframes, const int natoms, const float* coord,
                                  const int* atype, const float* cell, const float* fparam, const float* aparam,
                                  double* energy, float* force, float* virial, float* ae, float* av) {
  compute<float>(dp, true, nframes, natoms, coord, atype, false, cell, false, 0, nullptr, 0, fparam, aparam,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotModelDeviCompute(DP_DeepPotModelDevi* dp, const int natom, const double* coord, const int* atype,
                                const double* cell, double* energy, double* force, double* virial, double* ae,
                                double* av) {
  DP_DeepPotModelDeviCompute2(dp, 1, natom, coord, atype, cell, nullptr, nullptr, energy, force, virial, ae, av);
}
void DP_DeepPotModelDeviComputef(DP_DeepPotModelDevi* dp, const int natom, const float* coord, const int* atype,
                                 const float* cell, double* energy, float* force, float* virial, float* ae,
                                 float* av) {
  DP_DeepPotModelDeviComputef2(dp, 1, natom, coord, atype, cell, nullptr, nullptr, energy, force, virial, ae, av);
}
void DP_DeepPotModelDeviCompute3(DP_DeepPotModelDevi* dp, const int nframes, const int natoms, const double* coord,
                                 const int* atype, const double* cell, const double* fparam, const double* aparam,
                                 const double*, double* energy, double* force, double* virial, double* ae,
                                 double* av) {
  DP_DeepPotModelDeviCompute2(dp, nframes, natoms, coord, atype, cell, fparam, aparam, energy, force, virial, ae, av);
}
void DP_DeepPotModelDeviComputef3(DP_DeepPotModelDevi* dp, const int nframes, const int natoms, const float* coord,
                                  const int* atype, const float* cell, const float* fparam, const float* aparam,
                                  const float*, double* energy, float* force, float* virial, float* ae, float* av) {
  DP_DeepPotModelDeviComputef2(dp, nframes, natoms, coord, atype, cell, fparam, aparam, energy, force, virial, ae, av);
}
void DP_DeepPotModelDeviComputeNList2(DP_DeepPotModelDevi* dp, const int nframes, const int natoms,
                                      const double* coord, const int* atype, const double* cell, const int nghost,
                                      const DP_Nlist* nlist, const int ago, const double* fparam,
                                      const double* aparam, double* energy, double* force, double* virial,
                                      double* ae, double* av) {
  compute<double>(dp, true, nframes, natoms, coord, atype, false, cell, true, nghost, nlist, ago, fparam, aparam,
                  {energy, force, virial, ae, av});
}
void DP_DeepPotModelDeviComputeNListf2(DP_DeepPotModelDevi* dp, const int nframes, const int natoms,
                                       const float* coord, const int* atype, const float* cell, const int nghost,
                                       const DP_Nlist* nlist, const int ago, const float* fparam,
                                       const float* aparam, double* energy, float* force, float* virial, float* ae,
                                       float* av) {
  compute<float>(dp, true, nframes, natoms, coord, atype, false, cell, true, nghost, nlist, ago, fparam, aparam,
                 {energy, force, virial, ae, av});
}
void DP_DeepPotModelDeviComputeNList(DP_DeepPotModelDevi* dp, const int natom, const double* coord,
                                     const int* atype, const double* cell, const int nghost, const DP_Nlist* nlist,
                                     const int ago, double* energy, double* force, double* virial, double* ae,
                                     double* av) {
  DP_DeepPotModelDeviComputeNList2(dp, 1, natom, coord, atype, cell, nghost, nlist, ago, nullptr, nullptr, energy,
                                   force, virial, ae, av);
}
void DP_DeepPotModelDeviComputeNListf(DP_DeepPotModelDevi* dp, const int natom, const float* coord,
                                      const int* atype, const float* cell, const int nghost, const DP_Nlist* nlist,
                                      const int ago, double* energy, float* force, float* virial, float* ae,
                                      float* av) {
  DP_DeepPotModelDeviComputeNListf2(dp, 1, natom, coord, atype, cell, nghost, nlist, ago, nullptr, nullptr, energy,
                                    force, virial, ae, av);
}
void DP_DeepPotModelDeviComputeNList3(DP_DeepPotModelDevi* dp, const int nframes, const int natoms,
                                      const double* coord, const int* atype, const double* cell, const int nghost,
                                      const DP_Nlist* nlist, const int ago, const double* fparam,
                                      const double* aparam, const double*, double* energy, double* force,
                                      double* virial, double* ae, double* av) {
  DP_DeepPotModelDeviComputeNList2(dp, nframes, natoms, coord, atype, cell, nghost, nlist, ago, fparam, aparam,
                                   energy, force, virial, ae, av);
}
void DP_DeepPotModelDeviComputeNListf3(DP_DeepPotModelDevi* dp, const int nframes, const int natoms,
                                       const float* coord, const int* atype, const float* cell, const int nghost,
                                       const DP_Nlist* nlist, const int ago, const float* fparam,
                                       const float* aparam, const float*, double* energy, float* force,
                                       float* virial, float* ae, float* av) {
  DP_DeepPotModelDeviComputeNListf2(dp, nframes, natoms, coord, atype, cell, nghost, nlist, ago, fparam, aparam,
                                    energy, force, virial, ae, av);
}

}  // extern "C"
