// deepmd_md's DeePMD-kit C API: the objects behind the opaque handles, shared by handles.cc
// (construction, queries, errors) and compute.cc (evaluation).
#pragma once

#include <string>
#include <vector>

// the library is built with -fvisibility=hidden: only the DP_* functions are exported
#pragma GCC visibility push(default)
#include "deepmd/c_api.h"
#pragma GCC visibility pop
#include "dpmd_c.h"

struct DP_Nlist {
  // the engine's arrays, not copied (DeePMD-kit's list also only points at them)
  int inum = 0;
  const int* ilist = nullptr;
  const int* numneigh = nullptr;
  int* const* firstneigh = nullptr;
  int mask = -1;
  const int* mapping = nullptr;
};

namespace dpc {

// A copy of the engine's list, taken when ago == 0 and used until the next ago == 0 call.
struct ListCopy {
  bool valid = false;
  std::vector<int> ilist, numneigh, start, neigh;  // neigh: row ii at neigh[start[ii]..]
  std::vector<int> mapping;                        // DP_NlistSetMapping's, when given
};

// Per-frame scratch, kept to avoid reallocating every MD step.
struct Work {
  std::vector<double> coord, box, fparam, aparam, force, atom_energy, atom_virial;
  std::vector<double> ccoord, caparam;  // without virtual atoms
  std::vector<int> catype, fwd, ilist, numneigh, start, neigh, mapping;
  std::vector<const int*> firstneigh;
};

// One object for both DP_DeepPot (one model) and DP_DeepPotModelDevi (several): the first
// member of every public handle struct, so a handle pointer is a Handle pointer.
struct Handle {
  std::vector<dpmd_model*> models;
  std::string error;       // last failure, "" when the last call succeeded
  std::string load_error;  // why loading failed ("" when it did not)
  double rcut = 0.0;
  int ntypes = 0, dim_fparam = 0, dim_aparam = 0;
  std::string type_map;    // "O H"
  ListCopy list;
  Work work;

  virtual ~Handle();  // virtual: the Delete* functions may get a base pointer
  bool ok() const { return load_error.empty() && !models.empty(); }
};

// Load every path (file contents given: size >= 0 per model, else read the file) and check
// the models agree; failures land in load_error and error.
void load(Handle* h, const std::vector<std::string>& paths, const std::vector<std::string>* contents);

// A new malloc'd copy (DP_DeleteChar frees it).
const char* dup(const std::string& s);

}  // namespace dpc

struct DP_DeepBaseModel : dpc::Handle {};
struct DP_DeepBaseModelDevi : dpc::Handle {};
struct DP_DeepPot : DP_DeepBaseModel {};
struct DP_DeepPotModelDevi : DP_DeepBaseModelDevi {};
