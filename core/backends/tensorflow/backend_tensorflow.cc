// TensorFlow backend of the deepmd_md core: frozen graphs (.pb, deepmd_md.backends.tensorflow.
// freeze) and SavedModel folders (.savedmodel, JAX through jax2tf), run through the TensorFlow C
// API of the tensorflow wheel (libtensorflow_cc.so.2). Built into its own shared object,
// dlopened by the core. Contract (names, shapes, signatures): docs/backend_tensorflow.md.
#include <tensorflow/c/c_api.h>
#include <tensorflow/c/tf_tstring.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpmd/backend.h"

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// --- small RAII holders over the C API --------------------------------------------------------
struct Status {
  TF_Status* s = TF_NewStatus();
  ~Status() { TF_DeleteStatus(s); }
  void check(const std::string& what) const {
    if (TF_GetCode(s) != TF_OK) throw std::runtime_error(what + ": " + TF_Message(s));
  }
};
struct TensorDel {
  void operator()(TF_Tensor* t) const { if (t) TF_DeleteTensor(t); }
};
using Tensor = std::unique_ptr<TF_Tensor, TensorDel>;

Tensor make_tensor(TF_DataType dt, std::vector<int64_t> dims, const void* src, size_t bytes) {
  Tensor t(TF_AllocateTensor(dt, dims.data(), int(dims.size()), bytes));
  if (!t) throw std::runtime_error("TensorFlow could not allocate an input tensor");
  if (bytes) std::memcpy(TF_TensorData(t.get()), src, bytes);
  return t;
}

// --- the few protobuf fields of a MetaGraphDef we need (signature_def -> tensor names) ---------
// wire format: https://protobuf.dev/programming-guides/encoding/
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
      uint8_t b = *p++;
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("malformed MetaGraphDef (varint)");
  }
  // next field: number and, for length-delimited ones, the payload; false at the end
  bool next(int& field, Reader& sub) {
    if (p >= end) return false;
    uint64_t tag = varint();
    field = int(tag >> 3);
    switch (tag & 7) {
      case 0: varint(); sub = {p, p}; break;
      case 1: p += 8; sub = {p, p}; break;
      case 5: p += 4; sub = {p, p}; break;
      case 2: {
        uint64_t n = varint();
        if (n > uint64_t(end - p)) throw std::runtime_error("malformed MetaGraphDef (length)");
        sub = {p, p + n};
        p += n;
        break;
      }
      default: throw std::runtime_error("malformed MetaGraphDef (wire type)");
    }
    if (p > end) throw std::runtime_error("malformed MetaGraphDef (truncated)");
    return true;
  }
  std::string str() const { return std::string(reinterpret_cast<const char*>(p), size_t(end - p)); }
};

// map<string, TensorInfo> entry -> (key, TensorInfo.name)
std::pair<std::string, std::string> tensor_entry(Reader r) {
  std::string key, name;
  int f;
  Reader sub{nullptr, nullptr};
  while (r.next(f, sub)) {
    if (f == 1) key = sub.str();
    if (f == 2) {
      int g;
      Reader s2{nullptr, nullptr};
      while (sub.next(g, s2))
        if (g == 1) name = s2.str();
    }
  }
  return {key, name};
}

struct Signature {
  std::map<std::string, std::string> inputs, outputs;  // key -> graph tensor "op:index"
};

std::map<std::string, Signature> signatures(const TF_Buffer* meta) {
  std::map<std::string, Signature> out;
  Reader r{static_cast<const uint8_t*>(meta->data), static_cast<const uint8_t*>(meta->data) + meta->length};
  int f;
  Reader sub{nullptr, nullptr};
  while (r.next(f, sub)) {
    if (f != 5) continue;  // MetaGraphDef.signature_def: map<string, SignatureDef>
    std::string key;
    Signature sig;
    int g;
    Reader s2{nullptr, nullptr};
    while (sub.next(g, s2)) {
      if (g == 1) key = s2.str();
      if (g != 2) continue;
      int h;
      Reader s3{nullptr, nullptr};
      while (s2.next(h, s3)) {
        if (h == 1) sig.inputs.insert(tensor_entry(s3));
        if (h == 2) sig.outputs.insert(tensor_entry(s3));
      }
    }
    out[key] = sig;
  }
  return out;
}

// --- the backend ------------------------------------------------------------------------------
const char* const kInputs[] = {"extended_coord", "extended_atype", "nlist", "mapping"};
const char* const kOutputs[] = {"atom_energy", "energy", "extended_force", "virial", "extended_virial"};

int g_intra = 0, g_inter = 0;

// ConfigProto{intra_op_parallelism_threads = 2, inter_op_parallelism_threads = 5}, hand-encoded
std::string config_proto(int intra, int inter) {
  std::string s;
  auto put = [&s](int field, uint64_t v) {
    s.push_back(char(field << 3));
    do {
      uint8_t b = v & 0x7f;
      v >>= 7;
      s.push_back(char(v ? (b | 0x80) : b));
    } while (v);
  };
  put(2, uint64_t(intra));
  put(5, uint64_t(inter));
  return s;
}

int threads_from_env() {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  return (omp && std::atoi(omp) > 0) ? std::atoi(omp) : 1;
}

TF_Output op_output(TF_Graph* g, const std::string& spec, const std::string& what) {
  std::string name = spec;
  int index = 0;
  auto colon = spec.rfind(':');
  if (colon != std::string::npos) {
    name = spec.substr(0, colon);
    index = std::atoi(spec.c_str() + colon + 1);
  }
  TF_Operation* op = TF_GraphOperationByName(g, name.c_str());
  if (!op) throw std::runtime_error("the model graph has no " + what + " ('" + name + "')");
  return TF_Output{op, index};
}

// libdpmd_tf_ops.so (DpmdGhostExchange) beside this library, registered once before any graph
// is imported; message-passing graphs need it, the others run without it
void load_exchange_ops() {
  static const bool once = [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&load_exchange_ops), &info) && info.dli_fname) {
      std::string dir(info.dli_fname);
      dir = dir.substr(0, dir.rfind('/') + 1);
      Status st;
      TF_Library* lib = TF_LoadLibrary((dir + "libdpmd_tf_ops.so").c_str(), st.s);
      (void)lib;  // kept loaded for the process
    }
    return true;
  }();
  (void)once;
}

class TFBackend : public dpmd::Backend {
 public:
  explicit TFBackend(const std::string& path) {
    try {
      load(path);
    } catch (...) {
      release();
      throw;
    }
  }
  ~TFBackend() override { release(); }
  const char* name() const override { return name_.c_str(); }
  std::string metadata_json() const override { return meta_; }

 private:
  void release() {
    if (session_) {
      Status st;
      TF_CloseSession(session_, st.s);
      TF_DeleteSession(session_, st.s);
      session_ = nullptr;
    }
    if (graph_) TF_DeleteGraph(graph_);
    graph_ = nullptr;
  }

  void load(const std::string& path) {
    load_exchange_ops();
    graph_ = TF_NewGraph();
    Status st;
    TF_SessionOptions* opts = TF_NewSessionOptions();
    int intra = g_intra > 0 ? g_intra : threads_from_env();
    int inter = g_inter > 0 ? g_inter : 1;
    std::string cfg = config_proto(intra, inter);
    TF_SetConfig(opts, cfg.data(), cfg.size(), st.s);
    st.check("TensorFlow session options");
    std::map<std::string, std::string> in_names, out_names;
    std::string meta_tensor;
    if (ends_with(path, ".pb")) {
      name_ = "tensorflow-pb";
      std::ifstream f(path, std::ios::binary);
      if (!f) throw std::runtime_error("cannot open '" + path + "'");
      std::stringstream ss;
      ss << f.rdbuf();
      std::string blob = ss.str();
      TF_Buffer* buf = TF_NewBufferFromString(blob.data(), blob.size());
      TF_ImportGraphDefOptions* io = TF_NewImportGraphDefOptions();
      TF_GraphImportGraphDef(graph_, buf, io, st.s);
      TF_DeleteImportGraphDefOptions(io);
      TF_DeleteBuffer(buf);
      if (TF_GetCode(st.s) != TF_OK) {
        TF_DeleteSessionOptions(opts);
        throw std::runtime_error(std::string("not a TensorFlow GraphDef (truncated or another format?): ") +
                                 TF_Message(st.s));
      }
      session_ = TF_NewSession(graph_, opts, st.s);
      for (auto* k : kInputs) in_names[k] = std::string(k) + ":0";
      for (auto* k : kOutputs) out_names[k] = std::string(k) + ":0";
      meta_tensor = "metadata:0";
      for (const char* k : {"comm", "atom_weight"})
        if (TF_GraphOperationByName(graph_, k)) in_names[k] = std::string(k) + ":0";
    } else {
      name_ = "tensorflow-savedmodel";
      const char* tags[] = {"serve"};
      TF_Buffer* meta = TF_NewBuffer();
      session_ = TF_LoadSessionFromSavedModel(opts, nullptr, path.c_str(), tags, 1, graph_, meta, st.s);
      if (TF_GetCode(st.s) != TF_OK) {
        TF_DeleteBuffer(meta);
        TF_DeleteSessionOptions(opts);
        throw std::runtime_error(std::string("not a TensorFlow SavedModel folder with tag 'serve': ") +
                                 TF_Message(st.s));
      }
      auto sigs = signatures(meta);
      TF_DeleteBuffer(meta);
      auto fl = sigs.find("forward_lower");
      auto md = sigs.find("metadata");
      if (fl == sigs.end() || md == sigs.end() || !md->second.outputs.count("metadata")) {
        TF_DeleteSessionOptions(opts);
        throw std::runtime_error("the SavedModel lacks the 'forward_lower' and 'metadata' signatures "
                                 "(docs/backend_tensorflow.md)");
      }
      in_names = fl->second.inputs;
      out_names = fl->second.outputs;
      meta_tensor = md->second.outputs["metadata"];
    }
    TF_DeleteSessionOptions(opts);
    st.check("TensorFlow session");
    for (auto* k : kInputs) {
      if (!in_names.count(k)) throw std::runtime_error(std::string("the model has no input '") + k + "'");
      inputs_.push_back(op_output(graph_, in_names[k], std::string("input ") + k));
    }
    for (auto* k : kOutputs) {
      if (!out_names.count(k)) throw std::runtime_error(std::string("the model has no output '") + k + "'");
      outputs_.push_back(op_output(graph_, out_names[k], std::string("output ") + k));
    }
    if (in_names.count("comm")) {
      comm_ = op_output(graph_, in_names["comm"], "input comm");
      has_comm_ = true;
    }
    if (in_names.count("atom_weight")) {
      weight_ = op_output(graph_, in_names["atom_weight"], "input atom_weight");
      has_weight_ = true;
    }
    TF_Output mo = op_output(graph_, meta_tensor, "metadata constant");
    TF_Tensor* mt = nullptr;
    TF_SessionRun(session_, nullptr, nullptr, nullptr, 0, &mo, &mt, 1, nullptr, 0, nullptr, st.s);
    st.check("reading the model metadata");
    Tensor holder(mt);
    if (TF_TensorType(mt) != TF_STRING) throw std::runtime_error("the model's metadata is not a string");
    auto* ts = static_cast<const TF_TString*>(TF_TensorData(mt));
    meta_.assign(TF_StringGetDataPointer(ts), TF_StringGetSize(ts));
  }

 public:
  void compute(const dpmd::BackendInput& in, dpmd::BackendOutput& out) override {
    if (in.widths) throw std::runtime_error("TensorFlow models take no blocked neighbor lists");
    if (in.exchange && !has_comm_)
      throw std::runtime_error("this TensorFlow model has no ghost-exchange input 'comm': run it on one "
                               "MPI rank, or freeze it again where libdpmd_tf_ops.so is built");
    if (in.atom_weight && !has_weight_)
      throw std::runtime_error("this TensorFlow model has no 'atom_weight' input (freeze it again)");
    const int64_t nall = in.nall, nloc = in.nloc, nnei = in.nnei;
    std::vector<int64_t> mapping;
    const int64_t* mp = in.mapping;
    if (!mp) {  // models without message passing ignore it: any owner will do
      mapping.resize(size_t(nall));
      for (int64_t i = 0; i < nall; ++i) mapping[size_t(i)] = nloc > 0 ? i % nloc : 0;
      mp = mapping.data();
    }
    Tensor t[4] = {
        make_tensor(TF_DOUBLE, {1, nall, 3}, in.coord, sizeof(double) * size_t(nall * 3)),
        make_tensor(TF_INT64, {1, nall}, in.atype, sizeof(int64_t) * size_t(nall)),
        make_tensor(TF_INT64, {1, nloc, nnei}, in.nlist, sizeof(int64_t) * size_t(nloc * nnei)),
        make_tensor(TF_INT64, {1, nall}, mp, sizeof(int64_t) * size_t(nall)),
    };
    std::vector<TF_Output> ins(inputs_);
    std::vector<TF_Tensor*> in_vals = {t[0].get(), t[1].get(), t[2].get(), t[3].get()};
    Tensor handle;
    if (has_comm_) {  // the address of the exchange, read by DpmdGhostExchange (0: by mapping)
      const int64_t h = reinterpret_cast<int64_t>(in.exchange);
      handle = make_tensor(TF_INT64, {1}, &h, sizeof(h));
      ins.push_back(comm_);
      in_vals.push_back(handle.get());
    }
    Tensor weight;
    if (has_weight_) {  // ones unless the core weighs atoms (widened ghost shell)
      std::vector<double> ones;
      const double* w = in.atom_weight;
      if (!w) {
        ones.assign(size_t(nloc), 1.0);
        w = ones.data();
      }
      weight = make_tensor(TF_DOUBLE, {1, nloc}, w, sizeof(double) * size_t(nloc));
      ins.push_back(weight_);
      in_vals.push_back(weight.get());
    }
    // fetch only what is asked: energy, extended_force, virial, and the per-atom ones if wanted
    std::vector<int> want = {1, 2, 3};
    if (out.atom_energy) want.push_back(0);
    if (out.atom_virial) want.push_back(4);
    std::vector<TF_Output> fetch;
    for (int w : want) fetch.push_back(outputs_[size_t(w)]);
    std::vector<TF_Tensor*> res(fetch.size(), nullptr);
    Status st;
    TF_SessionRun(session_, nullptr, ins.data(), in_vals.data(), int(ins.size()), fetch.data(), res.data(), int(fetch.size()), nullptr,
                  0, nullptr, st.s);
    std::vector<Tensor> hold;
    for (auto* r : res) hold.emplace_back(r);
    st.check("TensorFlow model evaluation");
    auto copy = [&](size_t i, double* dst, int64_t n, const char* what) {
      TF_Tensor* r = res[i];
      if (TF_TensorType(r) != TF_DOUBLE) throw std::runtime_error(std::string("model output '") + what + "' is not float64");
      if (int64_t(TF_TensorElementCount(r)) != n)
        throw std::runtime_error(std::string("model output '") + what + "' has " +
                                 std::to_string(TF_TensorElementCount(r)) + " values, expected " + std::to_string(n));
      std::memcpy(dst, TF_TensorData(r), sizeof(double) * size_t(n));
    };
    double e = 0.0;
    copy(0, &e, 1, "energy");
    out.energy = e;
    copy(1, out.force, 3 * nall, "extended_force");
    copy(2, out.virial, 9, "virial");
    size_t k = 3;
    if (out.atom_energy) copy(k++, out.atom_energy, nloc, "atom_energy");
    if (out.atom_virial) copy(k++, out.atom_virial, 9 * nall, "extended_virial");
  }

 private:
  TF_Graph* graph_ = nullptr;
  TF_Session* session_ = nullptr;
  std::vector<TF_Output> inputs_, outputs_;
  TF_Output comm_{}, weight_{};
  bool has_comm_ = false, has_weight_ = false;
  std::string meta_, name_;
};

}  // namespace

extern "C" __attribute__((visibility("default"))) dpmd::Backend* dpmd_backend_create(const char* path, char* err,
                                                                                    unsigned long errlen) {
  try {
    return new TFBackend(path);
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
  } catch (...) {
    std::snprintf(err, errlen, "unknown error");
  }
  return nullptr;
}

// Threads of the sessions created from now on (TensorFlow fixes them per session); a running
// session keeps its own. 0 = OMP_NUM_THREADS (intra) / 1 (inter).
extern "C" __attribute__((visibility("default"))) int dpmd_backend_set_threads(int intra, int inter) {
  g_intra = intra;
  g_inter = inter;
  return 0;
}
