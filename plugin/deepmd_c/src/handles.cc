// deepmd_md's DeePMD-kit C API: construction, queries, errors, neighbor-list handles and the
// small utilities. The evaluation is in compute.cc.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "internal.h"

namespace dpc {

Handle::~Handle() {
  for (dpmd_model* m : models) dpmd_model_free(m);
}

const char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) return nullptr;
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

namespace {

// The core picks the backend by extension, so model bytes go to a temporary file with the
// extension of the name the caller gave; the file is removed once the model is loaded.
dpmd_model* load_bytes(const std::string& name, const std::string& bytes) {
  const size_t dot = name.find_last_of('.');
  const std::string ext = dot == std::string::npos ? "" : name.substr(dot);
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/deepmd_c_XXXXXX" + ext;
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  const int fd = mkstemps(buf.data(), int(ext.size()));
  if (fd < 0) throw std::runtime_error("cannot create a temporary file for the model content of " + name);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) break;
    done += size_t(n);
  }
  close(fd);
  dpmd_model* m = done == bytes.size() ? dpmd_model_load(buf.data()) : nullptr;
  const std::string why = done == bytes.size() ? dpmd_last_error() : "cannot write a temporary file";
  unlink(buf.data());
  if (!m) throw std::runtime_error("cannot load the model content given for " + name + ": " + why);
  return m;
}

std::string type_map_of(const dpmd_model* m) {
  std::string s;
  for (int t = 0; t < dpmd_model_ntypes(m); ++t) {
    const char* name = dpmd_model_type_name(m, t);
    if (t) s += ' ';
    s += name ? name : "";
  }
  return s;
}

}  // namespace

void load(Handle* h, const std::vector<std::string>& paths, const std::vector<std::string>* contents) {
  try {
    if (paths.empty()) throw std::runtime_error("no model file given");
    for (size_t i = 0; i < paths.size(); ++i) {
      dpmd_model* m = nullptr;
      if (contents && !(*contents)[i].empty()) {
        m = load_bytes(paths[i], (*contents)[i]);
      } else {
        m = dpmd_model_load(paths[i].c_str());
        if (!m) {
          const std::string why = dpmd_last_error();  // usually names the file already
          throw std::runtime_error(why.find(paths[i]) != std::string::npos ? why
                                                                           : "cannot load model '" + paths[i] + "': " + why);
        }
      }
      h->models.push_back(m);
    }
    const dpmd_model* first = h->models[0];
    h->ntypes = dpmd_model_ntypes(first);
    h->dim_fparam = dpmd_model_dim_fparam(first);
    h->dim_aparam = dpmd_model_dim_aparam(first);
    h->type_map = type_map_of(first);
    for (size_t i = 0; i < h->models.size(); ++i) {
      const dpmd_model* m = h->models[i];
      h->rcut = std::max(h->rcut, dpmd_model_rcut(m));
      // atom types are indices into one type map: models that disagree cannot share atype
      if (type_map_of(m) != h->type_map)
        throw std::runtime_error("model '" + paths[i] + "' has type map \"" + type_map_of(m) + "\", model '" +
                                 paths[0] + "' has \"" + h->type_map + "\": the models must share one type map");
      if (dpmd_model_dim_fparam(m) != h->dim_fparam || dpmd_model_dim_aparam(m) != h->dim_aparam)
        throw std::runtime_error("model '" + paths[i] + "' takes a different number of frame or atomic "
                                 "parameters (fparam/aparam) than '" + paths[0] + "'");
    }
  } catch (const std::exception& e) {
    h->load_error = e.what();
    h->error = h->load_error;
  }
}

}  // namespace dpc

namespace {

template <class H>
H* make(const char* const* models, int n, const std::vector<std::string>* contents) {
  H* h = new H();
  std::vector<std::string> paths;
  bool null_name = models == nullptr && n > 0;
  for (int i = 0; i < n && models; ++i) {
    if (!models[i]) null_name = true;
    paths.emplace_back(models[i] ? models[i] : "");
  }
  if (null_name) {
    h->load_error = h->error = "a model file name is NULL";
    return h;
  }
  dpc::load(h, paths, contents);
  return h;
}

const char* check(const dpc::Handle* h) { return dpc::dup(h ? h->error : std::string("null model handle")); }
double cutoff(const dpc::Handle* h) { return h ? h->rcut : 0.0; }
int ntypes(const dpc::Handle* h) { return h ? h->ntypes : 0; }
int dim_f(const dpc::Handle* h) { return h ? h->dim_fparam : 0; }
int dim_a(const dpc::Handle* h) { return h ? h->dim_aparam : 0; }

}  // namespace

extern "C" {

DP_Nlist* DP_NewNlist(int inum, int* ilist, int* numneigh, int** firstneigh) {
  DP_Nlist* nl = new DP_Nlist();
  nl->inum = inum;
  nl->ilist = ilist;
  nl->numneigh = numneigh;
  nl->firstneigh = firstneigh;
  return nl;
}
DP_Nlist* DP_NewNlist_comm(int inum, int* ilist, int* numneigh, int** firstneigh, int, int*, int*, int*, int**, int*,
                           int*, void*, int) {
  return DP_NewNlist(inum, ilist, numneigh, firstneigh);
}
void DP_NlistSetMask(DP_Nlist* nl, int mask) {
  if (nl) nl->mask = mask;
}
void DP_NlistSetMapping(DP_Nlist* nl, int* mapping) {
  if (nl) nl->mapping = mapping;
}
void DP_DeleteNlist(DP_Nlist* nl) { delete nl; }
const char* DP_NlistCheckOK(DP_Nlist* nl) { return dpc::dup(nl ? "" : "null neighbor list"); }

DP_DeepPot* DP_NewDeepPot(const char* c_model) { return make<DP_DeepPot>(&c_model, 1, nullptr); }

DP_DeepPot* DP_NewDeepPotWithParam(const char* c_model, const int, const char* c_file_content) {
  if (c_file_content && *c_file_content) {
    DP_DeepPot* h = new DP_DeepPot();
    h->load_error = h->error =
        "DP_NewDeepPotWithParam cannot take the model's content (it may hold NUL bytes): use "
        "DP_NewDeepPotWithParam2 with its size";
    return h;
  }
  return DP_NewDeepPot(c_model);
}

DP_DeepPot* DP_NewDeepPotWithParam2(const char* c_model, const int, const char* c_file_content,
                                    const int size_file_content) {
  std::vector<std::string> content(1);
  if (c_file_content && size_file_content > 0) content[0].assign(c_file_content, size_t(size_file_content));
  return make<DP_DeepPot>(&c_model, 1, &content);
}

void DP_DeleteDeepPot(DP_DeepPot* dp) { delete static_cast<dpc::Handle*>(dp); }
void DP_DeleteDeepBaseModel(DP_DeepBaseModel* dp) { delete static_cast<dpc::Handle*>(dp); }

DP_DeepPotModelDevi* DP_NewDeepPotModelDevi(const char** c_models, int n_models) {
  return make<DP_DeepPotModelDevi>(c_models, n_models, nullptr);
}

DP_DeepPotModelDevi* DP_NewDeepPotModelDeviWithParam(const char** c_models, const int n_models, const int,
                                                     const char** c_file_contents, const int n_file_contents,
                                                     const int* size_file_contents) {
  if (n_file_contents <= 0) return DP_NewDeepPotModelDevi(c_models, n_models);
  if (n_file_contents != n_models || !c_file_contents || !size_file_contents) {
    DP_DeepPotModelDevi* h = new DP_DeepPotModelDevi();
    h->load_error = h->error = "DP_NewDeepPotModelDeviWithParam: give one file content per model (n_file_contents = " +
                               std::to_string(n_file_contents) + ", n_models = " + std::to_string(n_models) + ")";
    return h;
  }
  std::vector<std::string> contents(static_cast<size_t>(n_models));
  for (int i = 0; i < n_models; ++i)
    if (c_file_contents[i] && size_file_contents[i] > 0)
      contents[i].assign(c_file_contents[i], size_t(size_file_contents[i]));
  return make<DP_DeepPotModelDevi>(c_models, n_models, &contents);
}

void DP_DeleteDeepPotModelDevi(DP_DeepPotModelDevi* dp) { delete static_cast<dpc::Handle*>(dp); }
void DP_DeleteDeepBaseModelDevi(DP_DeepBaseModelDevi* dp) { delete static_cast<dpc::Handle*>(dp); }

// -- queries: one implementation, every handle type --
double DP_DeepPotGetCutoff(DP_DeepPot* dp) { return cutoff(dp); }
int DP_DeepPotGetNumbTypes(DP_DeepPot* dp) { return ntypes(dp); }
int DP_DeepPotGetNumbTypesSpin(DP_DeepPot*) { return 0; }
int DP_DeepPotGetDimFParam(DP_DeepPot* dp) { return dim_f(dp); }
int DP_DeepPotGetDimAParam(DP_DeepPot* dp) { return dim_a(dp); }
int DP_DeepPotGetDimChgSpin(DP_DeepPot*) { return 0; }
bool DP_DeepPotIsAParamNAll(DP_DeepPot*) { return false; }
bool DP_DeepPotHasDefaultFParam(DP_DeepPot*) { return false; }
const char* DP_DeepPotGetTypeMap(DP_DeepPot* dp) { return dpc::dup(dp ? dp->type_map : ""); }
const char* DP_DeepPotCheckOK(DP_DeepPot* dp) { return check(dp); }

double DP_DeepBaseModelGetCutoff(DP_DeepBaseModel* dp) { return cutoff(dp); }
int DP_DeepBaseModelGetNumbTypes(DP_DeepBaseModel* dp) { return ntypes(dp); }
int DP_DeepBaseModelGetNumbTypesSpin(DP_DeepBaseModel*) { return 0; }
int DP_DeepBaseModelGetDimFParam(DP_DeepBaseModel* dp) { return dim_f(dp); }
int DP_DeepBaseModelGetDimAParam(DP_DeepBaseModel* dp) { return dim_a(dp); }
bool DP_DeepBaseModelIsAParamNAll(DP_DeepBaseModel*) { return false; }
bool DP_DeepBaseModelHasDefaultFParam(DP_DeepBaseModel*) { return false; }
const char* DP_DeepBaseModelGetTypeMap(DP_DeepBaseModel* dp) { return dpc::dup(dp ? dp->type_map : ""); }
const char* DP_DeepBaseModelCheckOK(DP_DeepBaseModel* dp) { return check(dp); }

double DP_DeepPotModelDeviGetCutoff(DP_DeepPotModelDevi* dp) { return cutoff(dp); }
int DP_DeepPotModelDeviGetNumbTypes(DP_DeepPotModelDevi* dp) { return ntypes(dp); }
int DP_DeepPotModelDeviGetNumbTypesSpin(DP_DeepPotModelDevi*) { return 0; }
int DP_DeepPotModelDeviGetDimFParam(DP_DeepPotModelDevi* dp) { return dim_f(dp); }
int DP_DeepPotModelDeviGetDimAParam(DP_DeepPotModelDevi* dp) { return dim_a(dp); }
int DP_DeepPotModelDeviGetDimChgSpin(DP_DeepPotModelDevi*) { return 0; }
bool DP_DeepPotModelDeviIsAParamNAll(DP_DeepPotModelDevi*) { return false; }
bool DP_DeepPotModelDeviHasDefaultFParam(DP_DeepPotModelDevi*) { return false; }
const char* DP_DeepPotModelDeviCheckOK(DP_DeepPotModelDevi* dp) { return check(dp); }

double DP_DeepBaseModelDeviGetCutoff(DP_DeepBaseModelDevi* dp) { return cutoff(dp); }
int DP_DeepBaseModelDeviGetNumbTypes(DP_DeepBaseModelDevi* dp) { return ntypes(dp); }
int DP_DeepBaseModelDeviGetNumbTypesSpin(DP_DeepBaseModelDevi*) { return 0; }
int DP_DeepBaseModelDeviGetDimFParam(DP_DeepBaseModelDevi* dp) { return dim_f(dp); }
int DP_DeepBaseModelDeviGetDimAParam(DP_DeepBaseModelDevi* dp) { return dim_a(dp); }
bool DP_DeepBaseModelDeviIsAParamNAll(DP_DeepBaseModelDevi*) { return false; }
bool DP_DeepBaseModelDeviHasDefaultFParam(DP_DeepBaseModelDevi*) { return false; }
const char* DP_DeepBaseModelDeviCheckOK(DP_DeepBaseModelDevi* dp) { return check(dp); }

// -- utilities --
void DP_PrintSummary(const char* c_pre) {
  const char* pre = c_pre ? c_pre : "";
  std::printf("%sdeepmd_md libdeepmd_c: the DeePMD-kit C API (version %d names) over the deepmd_md core "
              "(C API %d)\n", pre, DP_C_API_VERSION, DPMD_C_API_VERSION);
  std::printf("%smodel formats: those the deepmd_md core loads (.pth TorchScript, .pt2 AOTInductor)\n", pre);
  std::fflush(stdout);
}

const char* DP_ReadFileToChar2(const char* c_model, int* size) {
  std::ifstream in(c_model ? c_model : "", std::ios::binary);
  if (!in) {
    const std::string msg = std::string("cannot read file '") + (c_model ? c_model : "(null)") + "'";
    if (size) *size = -int(msg.size());
    return dpc::dup(msg);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  if (size) *size = int(s.size());
  return dpc::dup(s);
}

const char* DP_ReadFileToChar(const char* c_model) {
  int size = 0;
  const char* s = DP_ReadFileToChar2(c_model, &size);
  if (size < 0) {
    std::free(const_cast<char*>(s));
    return dpc::dup("");
  }
  return s;
}

void DP_DeleteChar(const char* c_str) { std::free(const_cast<char*>(c_str)); }

}  // extern "C"
