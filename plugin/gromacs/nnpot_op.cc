// dpmd_gmx::evaluate: the op that a TorchScript module written by `dpmd export-gromacs` calls
// from GROMACS' NNPot interface (docs/gromacs.md). It runs any frozen model the deepmd_md core
// loads (.pth, .pt2, ...) through the core's C API (core/include/dpmd_c.h):
//  - GROMACS gives float32 positions in nm, atomic numbers, the box (nm, rows are box vectors) and
//    pbc flags, or its pair list with shift vectors; the op works in float64 and Angstrom/eV and
//    returns (energy [kJ/mol], forces [N,3] kJ/mol/nm) so GROMACS needs no autograd through it;
//  - the frozen model travels inside the .pt (a uint8 buffer): the first call writes it once to a
//    cache file named by its content key, loads it, and keeps the dpmd_model for the process
//    (never reloaded per step); atomic numbers map to the model's type_map by element symbol;
//  - periodic boxes: the core builds the images and the neighbor list (nghost = 0, ilist = NULL);
//    pbc = xy: z is made non-periodic by a z period longer than the system plus the cutoffs;
//    pair list: GROMACS' pairs and shifts become ghost atoms and a full neighbor list;
//  - grompp's model check (every atom the link type, positions 0.01(i+1)(j+1) nm, 1 nm box) gets
//    zeros when the model lacks that element; anything else unmapped is a one-line error.
// Built into libdpmd_gromacs.so, which the exported module names in its `extension_libs` record
// (GROMACS dlopens it before torch::jit::load) and Python loads with torch.ops.load_library.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "dpmd_c.h"

namespace {

constexpr double kNm = 10.0;                           // nm -> Angstrom
constexpr double kEv = 96.48533212331002;              // eV -> kJ/mol
constexpr double kForce = kEv * kNm;                   // eV/A -> kJ/mol/nm
constexpr int kMaxZ = 118;

const char* const kElements[kMaxZ + 1] = {
    "",   "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
    "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md",
    "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error("deepmd_md: " + msg); }

std::string describe(const at::Tensor& t) {
  std::ostringstream s;
  s << c10::toString(t.scalar_type()) << "[";
  for (int64_t d = 0; d < t.dim(); ++d) s << (d ? "," : "") << t.size(d);
  s << "]";
  return s.str();
}

// One loaded model: kept for the life of the process (GROMACS evaluates it every step).
struct Entry {
  dpmd_model* model = nullptr;
  std::string path, type_list;
  int z_to_type[kMaxZ + 1];
  int dim_fparam = 0, dim_aparam = 0;
  double rcut = 0.0, ghost_cutoff = 0.0;
  // per-call buffers, reused
  std::vector<double> coord, force, aparam;
  std::vector<int> atype;
  // pair-list mode: ghosts of the last pair list (reused while GROMACS passes the same list)
  std::vector<int32_t> last_pairs;
  std::vector<double> last_shifts;
  std::vector<int> ghost_owner, mapping, ilist, numneigh;
  std::vector<double> ghost_shift;  // Angstrom, added to the owner's position
  std::vector<std::vector<int>> neigh;
  std::vector<const int*> firstneigh;
};

std::mutex g_mutex;
std::map<std::string, std::unique_ptr<Entry>> g_models;

std::string cache_dir() {
  std::string d;
  if (const char* e = std::getenv("DPMD_MD_GROMACS_CACHE"); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    d = std::string(x) + "/deepmd_md/gromacs";
  else if (const char* h = std::getenv("HOME"); h && *h)
    d = std::string(h) + "/.cache/deepmd_md/gromacs";
  return d;
}

bool make_dirs(const std::string& dir) {
  if (dir.empty()) return false;
  std::string cur;
  std::stringstream ss(dir);
  std::string part;
  if (dir[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && access(dir.c_str(), W_OK) == 0;
}

bool same_content(const std::string& path, const uint8_t* data, size_t n) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::vector<uint8_t> buf(1 << 20);
  size_t off = 0;
  bool same = true;
  while (same) {
    size_t got = std::fread(buf.data(), 1, buf.size(), f);
    if (got == 0) break;
    if (off + got > n || std::memcmp(buf.data(), data + off, got) != 0) same = false;
    off += got;
  }
  std::fclose(f);
  return same && off == n;
}

// The embedded model as a file the core can load: <cache>/<key><suffix>, written once.
std::string materialise(const at::Tensor& blob, const std::string& key, const std::string& suffix) {
  if (blob.scalar_type() != at::kByte || blob.dim() != 1)
    fail("the exported module's model buffer is not a uint8 vector (not written by dpmd export-gromacs?)");
  at::Tensor b = blob.to(at::kCPU).contiguous();  // GROMACS may have moved the module to a GPU
  const uint8_t* data = b.data_ptr<uint8_t>();
  const size_t n = size_t(b.numel());
  std::vector<std::string> dirs{cache_dir()};
  dirs.push_back("/tmp/deepmd_md-gromacs-" + std::to_string(getuid()));
  std::string tried;
  for (const auto& dir : dirs) {
    if (!make_dirs(dir)) {
      tried += (tried.empty() ? "" : ", ") + dir;
      continue;
    }
    const std::string path = dir + "/" + key + suffix;
    if (same_content(path, data, n)) return path;
    const std::string tmp = dir + "/." + key + "." + std::to_string(getpid()) + ".tmp" + suffix;
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
      tried += (tried.empty() ? "" : ", ") + dir;
      continue;
    }
    const bool ok = std::fwrite(data, 1, n, f) == n;
    if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
      std::remove(tmp.c_str());
      tried += (tried.empty() ? "" : ", ") + dir;
      continue;
    }
    return path;
  }
  fail("cannot write the embedded model to a cache folder (tried " + tried +
       "); set DPMD_MD_GROMACS_CACHE to a writable folder");
}

// GROMACS' own reference BLAS (built when no external BLAS is configured) exports dgemm_ and
// sgemm_ from libgromacs, which the executable loads before libtorch_cpu: torch's matrix products
// then resolve to it (measured: model calls ~2x slower). Say so once, with the remedy.
void check_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* torch = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (!torch) return;
    for (const char* sym : {"dgemm_", "sgemm_"}) {
      void* own = dlsym(torch, sym);
      void* bound = dlsym(RTLD_DEFAULT, sym);
      Dl_info oi{}, bi{};
      if (!own || !bound || own == bound || !dladdr(bound, &bi) || !dladdr(own, &oi) || !bi.dli_fname) continue;
      std::string dir = oi.dli_fname ? oi.dli_fname : "libtorch_cpu.so";
      std::fprintf(stderr,
                   "deepmd_md: warning: torch's matrix products (%s) resolve to %s, not to libtorch_cpu.so: a "
                   "reference BLAS serves the model (about 2x slower). Run mdrun with LD_PRELOAD=%s, or build "
                   "GROMACS with -DGMX_EXTERNAL_BLAS=ON -DGMX_EXTERNAL_LAPACK=ON (docs/gromacs.md).\n",
                   sym, bi.dli_fname, dir.c_str());
      break;
    }
    dlclose(torch);
  });
}

Entry& get_model(const at::Tensor& blob, const std::string& key, const std::string& suffix) {
  auto it = g_models.find(key);
  if (it != g_models.end()) return *it->second;
  check_blas();
  auto e = std::make_unique<Entry>();
  e->path = materialise(blob, key, suffix);
  e->model = dpmd_model_load(e->path.c_str());
  if (!e->model) fail(std::string("cannot load the embedded model: ") + dpmd_last_error());
  e->dim_fparam = dpmd_model_dim_fparam(e->model);
  e->dim_aparam = dpmd_model_dim_aparam(e->model);
  e->rcut = dpmd_model_rcut(e->model);
  e->ghost_cutoff = dpmd_model_ghost_cutoff(e->model);
  const int nt = dpmd_model_ntypes(e->model);
  for (int t = 0; t < nt; ++t) e->type_list += std::string(t ? ", " : "") + dpmd_model_type_name(e->model, t);
  std::vector<int> map(kMaxZ + 1, -1);
  for (int z = 1; z <= kMaxZ; ++z) map[z] = dpmd_model_type_index(e->model, kElements[z]);
  std::copy(map.begin(), map.end(), e->z_to_type);
  if (dpmd_model_set_type_map(e->model, kMaxZ + 1, map.data()) != 0)
    fail(std::string("type map: ") + dpmd_last_error());
  return *(g_models[key] = std::move(e));
}

// grompp's model check: every atom the link type, positions 0.01 (i+1)(j+1) nm, a 1 nm box.
bool is_grompp_check(const at::Tensor& x, const at::Tensor& z, const c10::optional<at::Tensor>& box) {
  const int64_t n = x.size(0);
  auto xa = x.accessor<double, 2>();
  auto za = z.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    if (za[i] != za[0]) return false;
    for (int j = 0; j < 3; ++j) {
      const double want = double(float(0.01 * double(i + 1) * double(j + 1)));
      if (std::abs(xa[i][j] - want) > 1e-6 * std::max(1.0, want)) return false;
    }
  }
  if (box && box->defined()) {
    at::Tensor b = box->to(at::kCPU, at::kDouble).contiguous();
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        if (b[r][c].item<double>() != (r == c ? 1.0 : 0.0)) return false;
  }
  return true;
}

std::string input_lines(const std::string& mode) {
  if (mode == "periodic")
    return "nnpot-model-input1 = atom-positions, nnpot-model-input2 = atom-numbers, nnpot-model-input3 = box, "
           "nnpot-model-input4 = pbc";
  if (mode == "pairs")
    return "nnpot-model-input1 = atom-positions, nnpot-model-input2 = atom-numbers, nnpot-model-input3 = "
           "atom-pairs, nnpot-model-input4 = pair-shifts";
  return "nnpot-model-input1 = atom-positions, nnpot-model-input2 = atom-numbers";
}

// Pair list -> ghosts (one per distinct (atom, shift)), a full neighbor list and the mapping.
void build_pair_ghosts(Entry& e, const at::Tensor& pairs, const at::Tensor& shifts, int64_t n) {
  const int64_t np = pairs.size(0);
  const int32_t* p = pairs.data_ptr<int32_t>();
  const double* s = shifts.data_ptr<double>();
  if (int64_t(e.last_pairs.size()) == 2 * np && int64_t(e.last_shifts.size()) == 3 * np &&
      int64_t(e.ilist.size()) == n && std::equal(p, p + 2 * np, e.last_pairs.begin()) &&
      std::equal(s, s + 3 * np, e.last_shifts.begin()))
    return;  // the same list as last step (GROMACS rebuilds it at search steps only)
  e.last_pairs.assign(p, p + 2 * np);
  e.last_shifts.assign(s, s + 3 * np);
  e.ghost_owner.clear();
  e.ghost_shift.clear();
  e.neigh.assign(n, {});
  struct Key {
    int atom;
    uint64_t b[3];
    bool operator==(const Key& o) const { return atom == o.atom && b[0] == o.b[0] && b[1] == o.b[1] && b[2] == o.b[2]; }
  };
  struct Hash {
    size_t operator()(const Key& k) const {
      size_t h = std::hash<int>()(k.atom);
      for (uint64_t v : k.b) h = h * 1000003u ^ std::hash<uint64_t>()(v);
      return h;
    }
  };
  std::unordered_map<Key, int, Hash> ghosts;
  // index of the copy of `atom` displaced by sign*shift (the atom itself when the shift is zero)
  auto copy_of = [&](int atom, const double* sh, double sign) -> int {
    if (sh[0] == 0.0 && sh[1] == 0.0 && sh[2] == 0.0) return atom;
    Key k{atom, {0, 0, 0}};
    for (int d = 0; d < 3; ++d) {
      const double v = sign * sh[d] + 0.0;  // +0.0: no -0
      std::memcpy(&k.b[d], &v, sizeof(double));
    }
    auto [it, fresh] = ghosts.emplace(k, int(n + e.ghost_owner.size()));
    if (fresh) {
      e.ghost_owner.push_back(atom);
      for (int d = 0; d < 3; ++d) e.ghost_shift.push_back(sign * sh[d] * kNm);
    }
    return it->second;
  };
  for (int64_t k = 0; k < np; ++k) {
    const int i = p[2 * k], j = p[2 * k + 1];
    if (i < 0 || j < 0 || i >= n || j >= n)
      fail("atom-pairs entry " + std::to_string(k) + " = (" + std::to_string(i) + ", " + std::to_string(j) +
           ") is not an NN atom (0.." + std::to_string(n - 1) + ")");
    const double* sh = s + 3 * k;
    // x[i] - x[j] + shift is the vector from j's copy to i: j's copy sits at x[j] - shift
    const int jc = copy_of(j, sh, -1.0), ic = copy_of(i, sh, 1.0);
    if (jc == i) continue;  // a zero-shift self pair: nothing
    e.neigh[i].push_back(jc);
    e.neigh[j].push_back(ic);
  }
  const int64_t nall = n + int64_t(e.ghost_owner.size());
  e.mapping.resize(nall);
  for (int64_t i = 0; i < n; ++i) e.mapping[i] = int(i);
  for (size_t g = 0; g < e.ghost_owner.size(); ++g) e.mapping[n + g] = e.ghost_owner[g];
  e.ilist.resize(n);
  e.numneigh.resize(n);
  e.firstneigh.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    e.ilist[i] = int(i);
    e.numneigh[i] = int(e.neigh[i].size());
    e.firstneigh[i] = e.neigh[i].data();
  }
}

std::tuple<at::Tensor, at::Tensor> evaluate(const at::Tensor& blob, std::string key, std::string suffix,
                                            std::string mode, std::vector<double> fparam,
                                            std::vector<double> aparam, const at::Tensor& positions,
                                            const at::Tensor& numbers, const c10::optional<at::Tensor>& box,
                                            const c10::optional<at::Tensor>& pbc,
                                            const c10::optional<at::Tensor>& pairs,
                                            const c10::optional<at::Tensor>& shifts) {
  const std::string need = "; the MDP must name " + input_lines(mode);
  if (!positions.is_floating_point() || positions.dim() != 2 || positions.size(1) != 3)
    fail("nnpot-model-input1 must be atom-positions (float [N,3]), got " + describe(positions) + need);
  const int64_t n = positions.size(0);
  if (numbers.is_floating_point() || numbers.scalar_type() == at::kBool || numbers.dim() != 1 ||
      numbers.size(0) != n)
    fail("nnpot-model-input2 must be atom-numbers (int [" + std::to_string(n) + "]), got " + describe(numbers) +
         need);
  if (mode == "periodic") {
    if (!box || !pbc)
      fail("this model was exported for a periodic system (dpmd export-gromacs without --no-pbc)" + need +
           " (for pbc = no, export with --no-pbc)");
    if (!box->is_floating_point() || box->dim() != 2 || box->size(0) != 3 || box->size(1) != 3)
      fail("nnpot-model-input3 must be box (float [3,3]), got " + describe(*box) + need);
    if (pbc->scalar_type() != at::kBool || pbc->numel() != 3)
      fail("nnpot-model-input4 must be pbc (bool [3]), got " + describe(*pbc) + need);
  } else if (mode == "pairs") {
    if (!pairs || !shifts)
      fail("this model was exported for GROMACS' pair list (--pair-list)" + need +
           " and nnpot-pair-cutoff");
    if (pairs->scalar_type() != at::kInt || pairs->dim() != 2 || pairs->size(1) != 2)
      fail("nnpot-model-input3 must be atom-pairs (int32 [P,2]), got " + describe(*pairs) + need);
    if (!shifts->is_floating_point() || shifts->dim() != 2 || shifts->size(1) != 3 ||
        shifts->size(0) != pairs->size(0))
      fail("nnpot-model-input4 must be pair-shifts (float [" + std::to_string(pairs->size(0)) + ",3]), got " +
           describe(*shifts) + need);
  } else if (mode != "open") {
    fail("unknown mode '" + mode + "' in the exported module (re-export it)");
  }

  std::lock_guard<std::mutex> lk(g_mutex);
  Entry& e = get_model(blob, key, suffix);
  if (int(fparam.size()) != e.dim_fparam)
    fail("the model takes " + std::to_string(e.dim_fparam) + " frame parameters but the module holds " +
         std::to_string(fparam.size()) + " (re-export with --fparam)");
  if (int(aparam.size()) != e.dim_aparam)
    fail("the model takes " + std::to_string(e.dim_aparam) + " atomic parameters but the module holds " +
         std::to_string(aparam.size()) + " (re-export with --aparam)");

  at::Tensor x = positions.detach().to(at::kCPU, at::kDouble).contiguous();
  at::Tensor z = numbers.to(at::kCPU, at::kLong).contiguous();
  auto opt = at::TensorOptions().dtype(at::kDouble);
  if (n == 0) return {at::zeros({}, opt), at::zeros({0, 3}, opt)};

  // atomic numbers -> the model's types (engine type = Z through dpmd_model_set_type_map)
  e.atype.resize(n);
  const int64_t* zp = z.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t zi = zp[i];
    if (zi < 1 || zi > kMaxZ || e.z_to_type[zi] < 0) {
      if (is_grompp_check(x, z, box)) return {at::zeros({}, opt), at::zeros({n, 3}, opt)};
      const std::string el = (zi >= 1 && zi <= kMaxZ) ? std::string(" (") + kElements[zi] + ")" : "";
      fail("NN atom " + std::to_string(i) + " has atomic number " + std::to_string(zi) + el +
           ", which is not in the model's type_map [" + e.type_list + "]");
    }
    e.atype[i] = int(zi);
  }
  const double* xp = x.data_ptr<double>();
  e.coord.resize(3 * n);
  for (int64_t k = 0; k < 3 * n; ++k) e.coord[k] = xp[k] * kNm;
  if (e.dim_aparam > 0) {
    e.aparam.resize(n * e.dim_aparam);
    for (int64_t i = 0; i < n; ++i)
      std::copy(aparam.begin(), aparam.end(), e.aparam.begin() + i * e.dim_aparam);
  }

  dpmd_input in = DPMD_INPUT_INIT;
  dpmd_output out = DPMD_OUTPUT_INIT;
  in.nloc = int(n);
  in.fparam = e.dim_fparam > 0 ? fparam.data() : nullptr;
  in.aparam = e.dim_aparam > 0 ? e.aparam.data() : nullptr;
  double cell[9];
  if (mode == "periodic") {
    at::Tensor b = box->to(at::kCPU, at::kDouble).contiguous();
    at::Tensor f = pbc->to(at::kCPU).contiguous();
    const bool* fp = f.data_ptr<bool>();
    const double* bp = b.data_ptr<double>();
    for (int k = 0; k < 9; ++k) cell[k] = bp[k] * kNm;
    if (fp[0] && fp[1] && !fp[2]) {
      // pbc = xy: a z period longer than the system plus twice the cutoff, so that no atom
      // meets a z image; the system is moved to z >= 0 (energies do not depend on it)
      if (cell[2] != 0.0 || cell[5] != 0.0)
        fail("pbc = xy needs box vectors a and b in the xy plane");
      double zmin = e.coord[2], zmax = e.coord[2];
      for (int64_t i = 0; i < n; ++i) {
        zmin = std::min(zmin, e.coord[3 * i + 2]);
        zmax = std::max(zmax, e.coord[3 * i + 2]);
      }
      if (!std::isfinite(zmin) || !std::isfinite(zmax)) fail("non-finite NN atom positions");
      for (int64_t i = 0; i < n; ++i) e.coord[3 * i + 2] -= zmin;
      cell[6] = cell[7] = 0.0;
      cell[8] = (zmax - zmin) + 2.0 * std::max(e.rcut, e.ghost_cutoff) + 1.0;
    } else if (!(fp[0] && fp[1] && fp[2])) {
      fail("pbc must be xyz or xy (GROMACS passes pbc only for those)");
    }
    in.box = cell;
  } else if (mode == "pairs") {
    at::Tensor pr = pairs->to(at::kCPU).contiguous();
    at::Tensor sh = shifts->to(at::kCPU, at::kDouble).contiguous();
    build_pair_ghosts(e, pr, sh, n);
    const size_t ng = e.ghost_owner.size();
    e.coord.resize(3 * (n + ng));
    e.atype.resize(n + ng);
    for (size_t g = 0; g < ng; ++g) {
      const int o = e.ghost_owner[g];
      for (int d = 0; d < 3; ++d) e.coord[3 * (n + g) + d] = e.coord[3 * o + d] + e.ghost_shift[3 * g + d];
      e.atype[n + g] = e.atype[o];
    }
    in.nghost = int(ng);
    in.inum = int(n);
    in.ilist = e.ilist.data();
    in.numneigh = e.numneigh.data();
    in.firstneigh = e.firstneigh.data();
    in.mapping = e.mapping.data();
  }
  in.coord = e.coord.data();
  in.atype = e.atype.data();
  const int64_t nrows = n + in.nghost;
  e.force.assign(3 * nrows, 0.0);
  out.force = e.force.data();
  if (dpmd_compute(e.model, &in, &out) != 0) fail(dpmd_last_error());

  at::Tensor forces = at::empty({n, 3}, opt);
  double* fo = forces.data_ptr<double>();
  for (int64_t k = 0; k < 3 * n; ++k) fo[k] = e.force[k];
  for (int64_t g = n; g < nrows; ++g)  // pair-list ghosts onto their atoms
    for (int d = 0; d < 3; ++d) fo[3 * e.mapping[g] + d] += e.force[3 * g + d];
  for (int64_t k = 0; k < 3 * n; ++k) fo[k] *= kForce;
  return {at::scalar_tensor(out.energy * kEv, opt), forces};
}

}  // namespace

TORCH_LIBRARY(dpmd_gmx, m) {
  // registered for every dispatch key (CompositeImplicitAutograd): the kernel runs above the
  // autograd layer, so the core's own autograd (forces of .pth models) works inside it
  m.def("evaluate(Tensor model_file, str key, str suffix, str mode, float[] fparam, float[] aparam, "
        "Tensor positions, Tensor numbers, Tensor? box, Tensor? pbc, Tensor? pairs, Tensor? shifts) "
        "-> (Tensor, Tensor)",
        &evaluate);
}
