// PyTorch backend of the deepmd_md core: TorchScript (.pth) and AOTInductor
// (.pt2) frozen models.  Built into its own shared object, dlopened by the core.
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

#include "dpmd/backend.h"

namespace {

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

// AOTInductor's loader unpacks a package into /tmp/aotinductor_XXXXXX and deletes it only in its
// destructor, which a run ending in an error (LAMMPS' error->all exits) never reaches: ~2.5 MB
// left per run. Once loaded the code is mapped and the constants are in memory, so the folders
// of the packages this process has mapped are removed right away.
void drop_extracted() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> dirs;
  for (std::string line; std::getline(maps, line);) {
    const auto p = line.find("/aotinductor_");
    if (p == std::string::npos) continue;
    const auto start = line.find('/');
    const auto end = line.find('/', p + 1);
    if (start != std::string::npos && end != std::string::npos) dirs.insert(line.substr(start, end - start));
  }
  for (const auto& d : dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);  // best effort: the destructor tries again
  }
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

void copy_out(const at::Tensor& t, double* dst, int64_t n, const char* what) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  if (c.numel() != n)
    throw std::runtime_error(std::string("model output '") + what + "' has " + std::to_string(c.numel()) +
                             " values, expected " + std::to_string(n));
  std::memcpy(dst, c.data_ptr<double>(), sizeof(double) * size_t(n));
}

struct Inputs {
  at::Tensor coord, atype, nlist, mapping, fparam, aparam;
  at::Tensor comm;  // [1] int64: address of the dpmd_exchange (message passing), else undefined
  at::Tensor weight;  // [1, nloc] f64 atom weights (weighted message-passing models)
  std::vector<at::Tensor> nlists, center;  // blocked inputs (BackendInput::widths)
};

Inputs make_inputs(const dpmd::BackendInput& in) {
  auto dopt = at::TensorOptions().dtype(at::kDouble);
  auto iopt = at::TensorOptions().dtype(at::kLong);
  Inputs r;
  r.coord = torch::from_blob(const_cast<double*>(in.coord), {1, in.nall, 3}, dopt);
  r.atype = torch::from_blob(const_cast<int64_t*>(in.atype), {1, in.nall}, iopt);
  if (in.widths) {
    int64_t off = 0, coff = 0;
    for (int64_t t = 0; t < in.ntypes; ++t) {
      r.nlists.push_back(torch::from_blob(const_cast<int64_t*>(in.nlist) + off, {1, in.nloc, in.widths[t]}, iopt));
      off += in.nloc * in.widths[t];
      r.center.push_back(torch::from_blob(const_cast<int64_t*>(in.center_idx) + coff, {in.center_count[t]}, iopt));
      coff += in.center_count[t];
    }
  } else {
    r.nlist = torch::from_blob(const_cast<int64_t*>(in.nlist), {1, in.nloc, in.nnei}, iopt);
    if (in.mapping) r.mapping = torch::from_blob(const_cast<int64_t*>(in.mapping), {1, in.nall}, iopt);
    if (in.exchange) {
      r.comm = torch::full({1}, reinterpret_cast<int64_t>(in.exchange), iopt);
      // the op then ignores mapping; any owner fills the input
      if (!r.mapping.defined()) r.mapping = at::arange(in.nall, iopt).remainder(in.nloc).reshape({1, in.nall});
    }
    if (in.atom_weight) r.weight = torch::from_blob(const_cast<double*>(in.atom_weight), {1, in.nloc}, dopt);
  }
  if (in.fparam) r.fparam = torch::from_blob(const_cast<double*>(in.fparam), {1, in.dim_fparam}, dopt);
  if (in.aparam) r.aparam = torch::from_blob(const_cast<double*>(in.aparam), {1, in.nloc, in.dim_aparam}, dopt);
  return r;
}

class TorchScriptBackend : public dpmd::Backend {
 public:
  explicit TorchScriptBackend(const std::string& path) {
    torch::jit::ExtraFilesMap extra{{"metadata.json", ""}};
    module_ = torch::jit::load(path, torch::kCPU, extra);
    module_.eval();
    meta_ = extra["metadata.json"];
    optimize_ = env_on("DPMD_MD_TORCHSCRIPT_OPTIMIZE");
    if (!module_.find_method("forward_lower"))
      throw std::runtime_error("the TorchScript module has no forward_lower method");
  }
  const char* name() const override { return "torchscript"; }
  std::string metadata_json() const override { return meta_; }
  void compute(const dpmd::BackendInput& in, dpmd::BackendOutput& out) override {
    try {
      compute_impl(in, out);
    } catch (const c10::Error& e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  }
  void compute_impl(const dpmd::BackendInput& in, dpmd::BackendOutput& out) {
    // The graph executor's optimizing mode (profiling, then autodiff subgraphs specialised to
    // the profiled shapes) runs the same ATen kernels as plain interpretation (no CPU fusion)
    // but keeps more intermediates for the backward: DPA-2 small, 192 atoms, peak RSS 1,170 vs
    // 723 MiB at the same CPU time. Interpreted, the graph runs op by op like eager PyTorch and
    // autograd saves what eager saves. Thread-local (the core may call from worker threads).
    // DPMD_MD_TORCHSCRIPT_OPTIMIZE=1 restores the optimizing executor (for comparison).
    torch::jit::GraphOptimizerEnabledGuard executor_mode(optimize_);
    Inputs t = make_inputs(in);
    std::vector<c10::IValue> args;
    args.reserve(7);
    args.emplace_back(t.coord);
    args.emplace_back(t.atype);
    if (in.widths) {  // forward_blocked(coord, atype, nlists, center_idx, do_atomic_virial)
      args.emplace_back(c10::List<at::Tensor>(t.nlists));
      args.emplace_back(c10::List<at::Tensor>(t.center));
    } else {
      args.emplace_back(t.nlist);
      // mapping: given for message-passing models (the module refuses None for them)
      args.emplace_back(t.mapping.defined() ? c10::IValue(t.mapping) : c10::IValue());
      args.emplace_back(t.fparam.defined() ? c10::IValue(t.fparam) : c10::IValue());
      args.emplace_back(t.aparam.defined() ? c10::IValue(t.aparam) : c10::IValue());
    }
    args.emplace_back(in.atomic_virial);
    // forward_lower(..., do_atomic_virial, comm, atom_weight)
    if (t.comm.defined() || t.weight.defined()) args.emplace_back(t.comm.defined() ? c10::IValue(t.comm) : c10::IValue());
    if (t.weight.defined()) args.emplace_back(t.weight);
    auto res = module_.get_method(in.widths ? "forward_blocked" : "forward_lower")(std::move(args));
    auto d = res.toGenericDict();
    auto get = [&](const char* k) -> at::Tensor {
      auto it = d.find(std::string(k));
      if (it == d.end()) throw std::runtime_error(std::string("model output has no '") + k + "'");
      return it->value().toTensor();
    };
    out.energy = get("energy").to(at::kDouble).sum().item<double>();
    copy_out(get("virial"), out.virial, 9, "virial");
    copy_out(get("extended_force"), out.force, 3 * in.nall, "extended_force");
    if (out.atom_energy) copy_out(get("atom_energy"), out.atom_energy, in.nloc, "atom_energy");
    if (out.atom_virial) copy_out(get("extended_virial"), out.atom_virial, 9 * in.nall, "extended_virial");
  }

 private:
  torch::jit::Module module_;
  std::string meta_;
  bool optimize_ = false;
};

// AOTInductor package contract (see docs/lammps.md):
//   inputs  (extended_coord [1,nall,3] f64, extended_atype [1,nall] i64, then either
//            - for "blocked" models, nlist_t [1,nloc,nnei_t] and idx_t [natoms_t] per type t,
//            - or else (forward_lower-style: mixed-type, hybrid, message-passing models)
//              nlist [1,nloc,nnei] i64 (raw: any order, -1 padded, neighbors beyond rcut
//              allowed), mapping [1,nall] i64 (owner < nloc of every extended atom; when the
//              core has none, i.e. a model that passes no messages, arange(nall) % nloc),
//            then [, fparam [1,dim_fparam]] [, aparam [1,nloc,dim_aparam]])
//   outputs (atom_energy [1,nloc], energy [1], extended_force [1,nall,3],
//            virial [1,9], extended_virial [1,nall,9])
//   metadata: the package metadata key "deepmd_md.metadata" holds metadata.json
class AOTIBackend : public dpmd::Backend {
 public:
  explicit AOTIBackend(const std::string& path) {
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", /*run_single_threaded=*/true);
    drop_extracted();
    auto md = loader_->get_metadata();
    for (const char* k : {"deepmd_md.metadata", "metadata.json"}) {
      auto it = md.find(k);
      if (it != md.end()) { meta_ = it->second; break; }
    }
  }
  const char* name() const override { return "aotinductor"; }
  std::string metadata_json() const override { return meta_; }
  void compute(const dpmd::BackendInput& in, dpmd::BackendOutput& out) override {
    try {
      compute_impl(in, out);
    } catch (const c10::Error& e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  }
  void compute_impl(const dpmd::BackendInput& in, dpmd::BackendOutput& out) {
    Inputs t = make_inputs(in);
    std::vector<at::Tensor> args{t.coord, t.atype};
    if (in.widths) {
      args.insert(args.end(), t.nlists.begin(), t.nlists.end());
      args.insert(args.end(), t.center.begin(), t.center.end());
    } else {
      args.push_back(t.nlist);
      // any owner will do for a model that passes no messages (it ignores mapping)
      args.push_back(t.mapping.defined() ? t.mapping
                                         : at::arange(in.nall, at::TensorOptions().dtype(at::kLong))
                                               .remainder(in.nloc)
                                               .reshape({1, in.nall}));
      if (t.comm.defined()) args.push_back(t.comm);
      if (t.weight.defined()) args.push_back(t.weight);
    }
    if (t.fparam.defined()) args.push_back(t.fparam);
    if (t.aparam.defined()) args.push_back(t.aparam);
    auto res = loader_->run(args);
    if (res.size() < 4) throw std::runtime_error("AOTInductor model returned " + std::to_string(res.size()) + " outputs, expected 5");
    out.energy = res[1].to(at::kDouble).sum().item<double>();
    copy_out(res[3], out.virial, 9, "virial");
    copy_out(res[2], out.force, 3 * in.nall, "extended_force");
    if (out.atom_energy) copy_out(res[0], out.atom_energy, in.nloc, "atom_energy");
    if (out.atom_virial) {
      if (res.size() < 5) throw std::runtime_error("AOTInductor model has no extended_virial output");
      copy_out(res[4], out.atom_virial, 9 * in.nall, "extended_virial");
    }
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::string meta_;
};

std::once_flag g_thread_once;

void apply_threads(int intra, int inter) {
  if (intra <= 0) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    intra = (omp && std::atoi(omp) > 0) ? std::atoi(omp) : 1;
  }
  at::set_num_threads(intra);
  // AOTInductor kernels take their OpenMP runtime from the process' global symbol scope
  // (in LAMMPS, its own libgomp, not torch's): set this thread's count there as well.
  using omp_set_fn = void (*)(int);
  // (dlopen(nullptr): the global scope itself; RTLD_DEFAULT would look in ours first, DEEPBIND)
  static const auto global_omp = reinterpret_cast<omp_set_fn>(dlsym(dlopen(nullptr, RTLD_NOW), "omp_set_num_threads"));
  if (global_omp) global_omp(intra);
  if (inter <= 0) inter = 1;
  std::call_once(g_thread_once, [inter] {
    try {
      at::set_num_interop_threads(inter);
    } catch (...) {
    }
  });
}

}  // namespace

extern "C" __attribute__((visibility("default"))) dpmd::Backend* dpmd_backend_create(const char* path, char* err,
                                                                                    unsigned long errlen) {
  try {
    std::string p(path);
    if (ends_with(p, ".pt2")) return new AOTIBackend(p);
    return new TorchScriptBackend(p);
  } catch (const c10::Error& e) {
    std::snprintf(err, errlen, "%s", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
  } catch (...) {
    std::snprintf(err, errlen, "unknown error");
  }
  return nullptr;
}

extern "C" __attribute__((visibility("default"))) int dpmd_backend_set_threads(int intra, int inter) {
  try {
    apply_threads(intra, inter);
    return 0;
  } catch (...) {
    return 1;
  }
}
