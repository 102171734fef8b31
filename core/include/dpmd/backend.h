// Interface between the deepmd_md core (libdpmd_core.so) and one framework
// backend shared object (libdpmd_backend_<fw>.so), which the core dlopens with
// RTLD_LOCAL so that several frameworks never share one symbol namespace.
//
// The backend sees model types, a padded neighbor list and plain buffers; type
// mapping, neighbor-list conversion and ghost handling live in the core.
#pragma once
#include <cstdint>
#include <string>

#include "dpmd_c.h"

namespace dpmd {

struct BackendInput {
  int64_t nloc = 0, nall = 0;
  const double* coord = nullptr;    // nall*3
  const int64_t* atype = nullptr;   // nall, model types
  const int64_t* nlist = nullptr;   // nloc*nnei, -1 padded, indices < nall
  int64_t nnei = 0;
  const double* box = nullptr;      // 9 or null
  const double* fparam = nullptr;   // dim_fparam or null
  int64_t dim_fparam = 0;
  const double* aparam = nullptr;   // nloc*dim_aparam or null
  int64_t dim_aparam = 0;
  bool atomic_virial = false;
  // Owner of each extended atom (nall values, each < nloc; local atoms own themselves), or
  // null. Message-passing models (metadata "message_passing": true) copy each ghost's node
  // features from its owner between layers (deepmd_md/model/comm.py); the core only calls
  // them with a mapping, over all atoms at once (never in chunks). Other models ignore it.
  const int64_t* mapping = nullptr;
  // Message-passing models frozen with dpmd::ghost_exchange: the exchange their op calls
  // (the engine's, or the core's over mapping); its address is the op's `handle` input.
  const dpmd_exchange* exchange = nullptr;
  // Weighted message-passing models (metadata exchange.weighted): energy = sum over local atoms
  // of atom_weight x atom energy, forces its gradient (nloc values; null = all ones).
  const double* atom_weight = nullptr;
  // Blocked neighbors (models whose metadata says "blocked": true), else null: nlist then
  // holds ntypes blocks one after another, block t [nloc, widths[t]] with the type-t
  // neighbors inside rcut (the nearest sel[t] when there are more), -1 padded; center_idx
  // lists the local atoms by type, center_count[t] of type t.
  int64_t ntypes = 0;
  const int64_t* widths = nullptr;
  const int64_t* center_idx = nullptr;
  const int64_t* center_count = nullptr;
};

struct BackendOutput {
  double energy = 0.0;
  double virial[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  double* force = nullptr;          // nall*3 (required)
  double* atom_energy = nullptr;    // nloc (optional)
  double* atom_virial = nullptr;    // nall*9 (optional; needs atomic_virial)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // raw metadata.json text of the frozen model
  virtual std::string metadata_json() const = 0;
  // throws std::runtime_error on failure
  virtual void compute(const BackendInput& in, BackendOutput& out) = 0;
};

}  // namespace dpmd

// Entry points every backend .so exports (C linkage, looked up with dlsym).
// Return nullptr on failure and write a message into err (size errlen).
extern "C" {
typedef dpmd::Backend* (*dpmd_backend_create_fn)(const char* path, char* err, unsigned long errlen);
typedef int (*dpmd_backend_set_threads_fn)(int intra_op, int inter_op);
}
