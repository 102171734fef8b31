// Internal types of the deepmd_md core shared by core.cc (C API, loading, metadata) and
// compute.cc (type mapping, neighbor lists, chunked backend calls).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dpmd/backend.h"
#include "dpmd_c.h"
#include "neighbor.h"
#include "pool.h"

namespace dpmd {

struct ModelInfo {
  std::vector<std::string> type_map;
  double rcut = 0.0;
  double ghost_cutoff = 0.0;
  std::vector<int64_t> sel;
  int nsel = 0;
  int dim_fparam = 0;
  int dim_aparam = 0;
  bool message_passing = false;
  // frozen with dpmd::ghost_exchange: runs across domains through dpmd_input.exchange
  bool exchange_op = false;
  int exchange_width = 0;  // widest exchanged row (columns)
  bool weighted = false;   // forward_lower takes atom_weight (widened ghost shells)
  double receptive_field = 0.0;
  bool blocked = false;  // takes per-type neighbor blocks (BackendInput::widths)
  std::string precision = "float64";
};

// What the core builds when the engine gives no neighbor list (compute.cc: compute_self).
struct SelfBuilt {
  Images img;
  NeighborList nl;
  std::vector<int> ilist, numneigh;
  std::vector<const int*> firstneigh;
  std::vector<double> force, atom_virial;
};

// One worker's buffers: the backend input of one chunk and what the worker adds up.
struct Scratch {
  std::vector<int64_t> nlist, widths, center_idx, center_count, cnt;
  std::vector<std::pair<double, int>> near;
  std::vector<int> remap, ids;
  std::vector<double> c_coord, c_force, c_av;
  std::vector<int64_t> c_atype;
  // sums over this worker's chunks (workers > 0; worker 0 writes to the output)
  std::vector<double> force, atom_virial;
  double energy = 0.0, virial[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
};

}  // namespace dpmd

struct dpmd_model {
  // backends[w] serves worker w: one instance per thread, so no call is shared
  std::vector<std::unique_ptr<dpmd::Backend>> backends;
  dpmd_backend_set_threads_fn set_threads = nullptr;  // called per worker thread
  std::string backend_name;
  std::string meta_json;
  dpmd::ModelInfo info;
  std::vector<int> type_map;
  bool has_type_map = false;
  // shared by all workers (read-only while they run)
  std::vector<int64_t> atype;
  std::vector<int64_t> mapping;  // dpmd_input.mapping as int64 (empty when not given)
  dpmd_exchange own_exchange{};  // the core's in-process exchange over `mapping`
  std::vector<int> row_start, row_count, kept;
  std::vector<dpmd::Scratch> scratch;  // one per worker
  dpmd::SelfBuilt self;                // images and neighbors when the engine gives none
  std::vector<double> weight;          // widened ghost shell: 1 for local atoms, 0 for ghosts
  std::vector<double> ones;            // atom_weight of every other call of a weighted model
  std::unique_ptr<dpmd::WorkerPool> pool;
  int chunk = 0;
  int threads = 1;  // workers: chunks run concurrently, each backend call on one thread
  // optional timing (DPMD_MD_PROFILE=1): printed to stderr when the model is freed
  bool profile = false;
  long ncalls = 0;
  double t_prep = 0.0, t_backend = 0.0;
  std::string path;
  ~dpmd_model();
};

namespace dpmd {
void set_error(const std::string& m);
// one evaluation with the engine's (or the core's) neighbor list (compute.cc); throws
void compute_listed(dpmd_model* m, const dpmd_input* in, dpmd_output* out);
}
