// Paddle backend of the deepmd_md core: frozen `.json` + `.pdiparams` programs
// (deepmd_md/backends/paddle/freeze.py) run by Paddle Inference.
//
// The paddle wheel ships no inference headers, but its Python extension
// paddle/base/libpaddle.so exports the C++ inference API. The few classes and
// methods used are declared below by hand (their public signatures in Paddle
// 3.x's paddle_analysis_config.h / paddle_inference_api.h / paddle_tensor.h);
// every call is a plain exported symbol (no inline code, no class layout is
// relied on except through pointers). libpaddle.so leaves the CPython C API
// undefined, so this library also links libpython (never initialised: the
// inference path does not call into Python).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpmd/backend.h"
#include "json.h"

namespace paddle {
// paddle::AnalysisConfig (alias paddle_infer::Config). Storage: the object is
// built in place in a buffer far larger than Paddle's class (a few KB).
class AnalysisConfig {
 public:
  AnalysisConfig(const std::string& prog_file, const std::string& params_file);
  ~AnalysisConfig();
  void DisableMKLDNN();
  void DisableGlogInfo();
  void SetCpuMathLibraryNumThreads(int n);
  void SwitchIrOptim(int x);

 private:
  alignas(64) unsigned char storage_[1 << 16];
};
}  // namespace paddle

namespace paddle_infer {
class Tensor {
 public:
  void Reshape(const std::vector<int>& shape);
  template <typename T>
  void CopyFromCpu(const T* data);
  template <typename T>
  void CopyToCpu(T* data) const;
  std::vector<int> shape() const;

 private:
  Tensor() = delete;  // only Paddle makes them (handles are held, never deleted: see below)
};

class Predictor {
 public:
  std::vector<std::string> GetInputNames();
  std::unique_ptr<Tensor> GetInputHandle(const std::string& name);
  std::vector<std::string> GetOutputNames();
  std::unique_ptr<Tensor> GetOutputHandle(const std::string& name);
  bool Run();

 private:
  Predictor() = delete;
};

std::shared_ptr<Predictor> CreatePredictor(const paddle::AnalysisConfig& config);
}  // namespace paddle_infer

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// The deepmd_md part of the .json: {"deepmd_md": {"metadata.json": "<text>", "model.dp": "..."}}.
std::string read_metadata(const std::string& path, std::string* text) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  *text = ss.str();
  dpmd::json::Value v;
  try {
    v = dpmd::json::parse(ss.str());
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " is not a Paddle model .json (" + e.what() + ")");
  }
  if (v.kind != dpmd::json::Value::Object || !v.has("deepmd_md") || !v.at("deepmd_md").has("metadata.json"))
    throw std::runtime_error(path + ": a .json without deepmd_md's model (freeze it with `dpmd freeze -o NAME.json`)");
  return v.at("deepmd_md").at("metadata.json").as_string("metadata.json");
}

// Tensor handles are kept for the predictor's life and never destroyed: the
// wheel exports no ~Tensor (it is inline in Paddle's header), so deleting one
// here would need its layout. One handle per input/output name per model.
paddle_infer::Tensor* keep(std::unique_ptr<paddle_infer::Tensor> t, const std::string& name) {
  if (!t) throw std::runtime_error("the Paddle program has no tensor '" + name + "'");
  return t.release();
}

// libdpmd_paddle_ops.so beside this library: the custom operators of frozen programs
// (dpmd_ghost_exchange for message passing across ranks, dpmd_tabulate[_fusion] for compressed
// models), registered with Paddle once per process before any predictor is created; it exports
// dpmd_paddle_register_ops (core/backends/paddle/exchange_op.cc). Programs without custom ops
// run without it; one with them gets a clear error when it is missing.
void load_custom_ops(const std::string& model, const std::string& text) {
  static std::mutex mu;
  static std::string error;  // empty once registered
  static bool tried = false;
  // program ops are named DIALECT.NAME ("3.dpmd_ghost_exchange" in Paddle 3.x)
  if (text.find(".dpmd_ghost_exchange\"") == std::string::npos && text.find(".dpmd_tabulate") == std::string::npos) return;
  std::lock_guard<std::mutex> lock(mu);
  if (!tried) {
    tried = true;
    std::string path = "libdpmd_paddle_ops.so";
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&load_custom_ops), &info) && info.dli_fname) {
      std::string self(info.dli_fname);
      path = self.substr(0, self.rfind('/') + 1) + path;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    using Fn = int (*)(void*, char*, unsigned long);
    Fn reg = h ? reinterpret_cast<Fn>(dlsym(h, "dpmd_paddle_register_ops")) : nullptr;
    char err[1024] = {0};
    if (!h) {
      const char* e = dlerror();
      error = "cannot load " + path + " (" + (e ? e : "?") + ")";
    } else if (!reg) {
      error = path + " has no dpmd_paddle_register_ops";
    } else if (reg(h, err, sizeof err) != 0) {
      error = "registering the operators of " + path + " failed: " + err;
    }
  }
  if (!error.empty())
    throw std::runtime_error(model + " uses deepmd_md's Paddle operators, but " + error +
                             ": reinstall deepmd_md with its C++ parts");
}

class PaddleBackend : public dpmd::Backend {
 public:
  explicit PaddleBackend(const std::string& path) {
    if (!ends_with(path, ".json")) throw std::runtime_error("a Paddle model is NAME.json (+ NAME.pdiparams)");
    std::string text;
    meta_ = read_metadata(path, &text);
    std::string params = path.substr(0, path.size() - 5) + ".pdiparams";
    if (std::FILE* f = std::fopen(params.c_str(), "rb")) {
      std::fclose(f);
    } else {
      throw std::runtime_error("the weights of " + path + " are missing: " + params);
    }
    load_custom_ops(path, text);
    text.clear();
    text.shrink_to_fit();
    auto cfg = std::make_unique<paddle::AnalysisConfig>(path, params);
    cfg->DisableMKLDNN();  // oneDNN kernels change fp64 results and start their own threads
    cfg->DisableGlogInfo();
    cfg->SetCpuMathLibraryNumThreads(1);  // the core runs chunks on its own threads
    pred_ = paddle_infer::CreatePredictor(*cfg);
    if (!pred_) throw std::runtime_error("Paddle could not create a predictor for " + path);
    for (const auto& n : pred_->GetInputNames()) {
      inputs_.emplace_back(n, keep(pred_->GetInputHandle(n), n));
      has_comm_ = has_comm_ || n == "comm";
    }
    for (const auto& n : pred_->GetOutputNames()) outputs_.push_back(keep(pred_->GetOutputHandle(n), n));
    if (outputs_.size() != 5)
      throw std::runtime_error("the Paddle program has " + std::to_string(outputs_.size()) +
                               " outputs, expected 5 (atom_energy, energy, extended_force, virial, extended_virial)");
  }
  const char* name() const override { return "paddle"; }
  std::string metadata_json() const override { return meta_; }

  void compute(const dpmd::BackendInput& in, dpmd::BackendOutput& out) override {
    if (in.exchange && !has_comm_)
      throw std::runtime_error("this Paddle model has no ghost-exchange input 'comm': run it in one domain, "
                               "or freeze it again with the Paddle operators built");
    const int nall = int(in.nall), nloc = int(in.nloc), nnei = int(in.nnei);
    std::vector<int64_t> owner;
    // blocked models (metadata "blocked"): nlist_t [1, nloc, widths[t]], center_t [count[t]]
    std::vector<const int64_t*> nl_ptr, c_ptr;
    if (in.widths) {
      const int64_t* p = in.nlist;
      const int64_t* c = in.center_idx;
      for (int64_t t = 0; t < in.ntypes; ++t) {
        nl_ptr.push_back(p);
        p += in.nloc * in.widths[t];
        c_ptr.push_back(c);
        c += in.center_count[t];
      }
    }
    for (auto& [n, t] : inputs_) {
      if (n.rfind("nlist_", 0) == 0 || n.rfind("center_", 0) == 0) {
        const bool is_nl = n[0] == 'n';
        const int64_t k = std::atoll(n.c_str() + (is_nl ? 6 : 7));
        if (!in.widths || k < 0 || k >= in.ntypes)
          throw std::runtime_error("the Paddle program wants '" + n + "', which the core did not give (blocked model?)");
        if (is_nl) {
          t->Reshape({1, nloc, int(in.widths[k])});
          t->CopyFromCpu<int64_t>(nl_ptr[size_t(k)]);
        } else {
          t->Reshape({int(in.center_count[k])});
          t->CopyFromCpu<int64_t>(c_ptr[size_t(k)]);
        }
      } else if (n == "extended_coord") {
        t->Reshape({1, nall, 3});
        t->CopyFromCpu<double>(in.coord);
      } else if (n == "extended_atype") {
        t->Reshape({1, nall});
        t->CopyFromCpu<int64_t>(in.atype);
      } else if (n == "nlist") {
        t->Reshape({1, nloc, nnei});
        t->CopyFromCpu<int64_t>(in.nlist);
      } else if (n == "comm") {  // the address of the exchange, read by dpmd_ghost_exchange (0: by mapping)
        const int64_t h = reinterpret_cast<int64_t>(in.exchange);
        t->Reshape({1});
        t->CopyFromCpu<int64_t>(&h);
      } else if (n == "atom_weight") {  // ones unless the core weighs atoms (widened ghost shell)
        const double* w = in.atom_weight;
        if (!w) {
          ones_.assign(size_t(nloc), 1.0);
          w = ones_.data();
        }
        t->Reshape({1, nloc});
        t->CopyFromCpu<double>(w);
      } else if (n == "mapping") {
        const int64_t* m = in.mapping;
        if (!m) {  // any owner for a model that passes no messages
          owner.resize(size_t(nall));
          for (int i = 0; i < nall; ++i) owner[size_t(i)] = nloc > 0 ? i % nloc : 0;
          m = owner.data();
        }
        t->Reshape({1, nall});
        t->CopyFromCpu<int64_t>(m);
      } else {
        throw std::runtime_error("the Paddle program has an unknown input '" + n + "'");
      }
    }
    if (!pred_->Run()) throw std::runtime_error("Paddle predictor run failed");
    auto fetch = [&](int i, const char* what, size_t n, double* dst) {
      std::vector<int> s = outputs_[size_t(i)]->shape();
      size_t got = 1;
      for (int d : s) got *= size_t(d);
      if (got != n)
        throw std::runtime_error(std::string("model output '") + what + "' has " + std::to_string(got) +
                                 " values, expected " + std::to_string(n));
      outputs_[size_t(i)]->CopyToCpu<double>(dst);
    };
    double energy = 0.0;
    fetch(1, "energy", 1, &energy);
    out.energy = energy;
    fetch(3, "virial", 9, out.virial);
    fetch(2, "extended_force", size_t(3) * size_t(nall), out.force);
    if (out.atom_energy) fetch(0, "atom_energy", size_t(nloc), out.atom_energy);
    if (out.atom_virial) fetch(4, "extended_virial", size_t(9) * size_t(nall), out.atom_virial);
  }

 private:
  std::string meta_;
  std::shared_ptr<paddle_infer::Predictor> pred_;
  std::vector<std::pair<std::string, paddle_infer::Tensor*>> inputs_;
  std::vector<paddle_infer::Tensor*> outputs_;
  bool has_comm_ = false;
  std::vector<double> ones_;
};

}  // namespace

extern "C" __attribute__((visibility("default"))) dpmd::Backend* dpmd_backend_create(const char* path, char* err,
                                                                                    unsigned long errlen) {
  try {
    return new PaddleBackend(path);
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
  } catch (...) {
    std::snprintf(err, errlen, "unknown error in the Paddle backend");
  }
  return nullptr;
}

// Each predictor computes on one thread (SetCpuMathLibraryNumThreads(1)); the core runs
// chunks of local atoms on its own threads, one predictor each.
extern "C" __attribute__((visibility("default"))) int dpmd_backend_set_threads(int, int) { return 0; }
