// DpmdGhostExchange / DpmdGhostExchangeReverse: the TensorFlow form of dpmd::ghost_exchange, the
// one framework op of message passing (docs/core_contract.md), written against TensorFlow's C
// op/kernel API so that it needs no TensorFlow C++ ABI.
//
//   DpmdGhostExchange(g [nf, nloc, *f], mapping [nf, nall] i64, handle [1] i64) -> [nf, nall, *f]
//   DpmdGhostExchangeReverse(grad [nf, nall, *f], mapping, handle, nloc [] i64) -> [nf, nloc, *f]
//
// handle 0: in this process, ghost rows are their owners' rows (gather by mapping; the reverse
// sums ghost rows onto their owners). Otherwise the address of a dpmd_exchange: the engine
// fills ghost rows (forward) or adds them into their owners (reverse), across MPI ranks.
// Python registers the reverse as the gradient of the forward (deepmd_md/backends/tensorflow/
// ops.py), so a frozen graph's tf.gradients holds both ops. Built into libdpmd_tf_ops.so, loaded
// by the TensorFlow backend (TF_LoadLibrary) and by Python (tf.load_op_library).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dpmd_c.h"
#include "tf_op.h"

namespace {

template <typename T>
void to_rows(const T* src, double* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = double(src[i]);
}
template <typename T>
void from_rows(const double* src, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = T(src[i]);
}

template <typename T>
void run(TF_OpKernelContext* ctx, bool reverse) {
  In x, mapping, handle, nloc_in;
  if (!get(ctx, 0, x) || !get(ctx, 1, mapping) || !get(ctx, 2, handle)) return;
  if (reverse && !get(ctx, 3, nloc_in)) return;
  const int nd = TF_NumDims(x.t);
  if (nd < 2 || TF_NumDims(mapping.t) != 2 || TF_Dim(mapping.t, 0) != TF_Dim(x.t, 0))
    return fail(ctx, "DpmdGhostExchange: x [nf, n, ...] and mapping [nf, nall] expected");
  if (TF_TensorElementCount(handle.t) != 1) return fail(ctx, "DpmdGhostExchange: handle must be one int64");
  const int64_t nf = TF_Dim(x.t, 0), nall = TF_Dim(mapping.t, 1);
  const int64_t nloc = reverse ? *static_cast<const int64_t*>(TF_TensorData(nloc_in.t)) : TF_Dim(x.t, 1);
  int64_t ncol = 1;
  for (int d = 2; d < nd; ++d) ncol *= TF_Dim(x.t, d);
  std::vector<int64_t> dims(static_cast<size_t>(nd));
  for (int d = 0; d < nd; ++d) dims[size_t(d)] = TF_Dim(x.t, d);
  dims[1] = reverse ? nloc : nall;
  const int64_t nout = nf * dims[1] * ncol;
  TF_Status* s = TF_NewStatus();
  TF_Tensor* out = TF_AllocateOutput(ctx, 0, TF_TensorType(x.t), dims.data(), nd, sizeof(T) * size_t(nout), s);
  if (TF_GetCode(s) != TF_OK) {
    TF_OpKernelContext_Failure(ctx, s);
    TF_DeleteStatus(s);
    return;
  }
  TF_DeleteStatus(s);
  In out_holder;
  out_holder.t = out;
  const T* src = static_cast<const T*>(TF_TensorData(x.t));
  T* dst = static_cast<T*>(TF_TensorData(out));
  const int64_t* mp = static_cast<const int64_t*>(TF_TensorData(mapping.t));
  const auto* ex = reinterpret_cast<const dpmd_exchange*>(*static_cast<const int64_t*>(TF_TensorData(handle.t)));
  if (!ex) {  // in this process, by mapping
    const int64_t nin = TF_Dim(x.t, 1);
    if (!reverse) {
      for (int64_t f = 0; f < nf; ++f)
        for (int64_t j = 0; j < nall; ++j) {
          const int64_t o = mp[f * nall + j];
          if (o < 0 || o >= nin) return fail(ctx, "DpmdGhostExchange: mapping out of range");
          std::memcpy(dst + (f * nall + j) * ncol, src + (f * nin + o) * ncol, sizeof(T) * size_t(ncol));
        }
    } else {
      std::memset(dst, 0, sizeof(T) * size_t(nout));
      for (int64_t f = 0; f < nf; ++f)
        for (int64_t j = 0; j < nall; ++j) {
          const int64_t o = mp[f * nall + j];
          if (o < 0 || o >= nloc) return fail(ctx, "DpmdGhostExchangeReverse: mapping out of range");
          T* d = dst + (f * nloc + o) * ncol;
          const T* g = src + (f * nall + j) * ncol;
          for (int64_t c = 0; c < ncol; ++c) d[c] += g[c];
        }
    }
    return;
  }
  if (nf != 1) return fail(ctx, "DpmdGhostExchange: an engine exchange takes one frame");
  std::vector<double> rows(size_t(nall * ncol), 0.0);
  if (!reverse) {
    to_rows(src, rows.data(), nloc * ncol);
    if (ex->forward(ex->ctx, rows.data(), int(ncol)) != 0)
      return fail(ctx, "DpmdGhostExchange: the engine's forward exchange of " + std::to_string(ncol) + " columns failed");
    from_rows(rows.data(), dst, nall * ncol);
  } else {
    to_rows(src, rows.data(), nall * ncol);
    if (ex->reverse(ex->ctx, rows.data(), int(ncol)) != 0)
      return fail(ctx, "DpmdGhostExchangeReverse: the engine's reverse exchange of " + std::to_string(ncol) + " columns failed");
    from_rows(rows.data(), dst, nloc * ncol);
  }
}

template <bool Reverse>
void compute(void*, TF_OpKernelContext* ctx) {
  In x;
  if (!get(ctx, 0, x)) return;
  if (TF_TensorType(x.t) == TF_DOUBLE) return run<double>(ctx, Reverse);
  if (TF_TensorType(x.t) == TF_FLOAT) return run<float>(ctx, Reverse);
  fail(ctx, "DpmdGhostExchange: float32 or float64 features expected");
}


void unknown_shape(TF_ShapeInferenceContext* ctx, TF_Status* s) { TF_ShapeInferenceContextSetUnknownShape(ctx, s); }

void register_op(const char* name, bool reverse) {
  TF_Status* s = TF_NewStatus();
  TF_OpDefinitionBuilder* b = TF_NewOpDefinitionBuilder(name);
  TF_OpDefinitionBuilderAddAttr(b, "T: {float, double}");
  TF_OpDefinitionBuilderAddInput(b, "x: T");
  TF_OpDefinitionBuilderAddInput(b, "mapping: int64");
  TF_OpDefinitionBuilderAddInput(b, "handle: int64");
  if (reverse) TF_OpDefinitionBuilderAddInput(b, "nloc: int64");
  TF_OpDefinitionBuilderAddOutput(b, "y: T");
  TF_OpDefinitionBuilderSetIsStateful(b, true);  // calls the engine: never fold or dedupe it
  TF_OpDefinitionBuilderSetShapeInferenceFunction(b, unknown_shape);
  TF_RegisterOpDefinition(b, s);
  TF_KernelBuilder* kb = TF_NewKernelBuilder(name, "CPU", create, reverse ? compute<true> : compute<false>, destroy);
  TF_KernelBuilder_HostMemory(kb, "handle");
  TF_RegisterKernelBuilder(name, kb, s);
  TF_DeleteStatus(s);
}

const bool registered = [] {
  register_op("DpmdGhostExchange", false);
  register_op("DpmdGhostExchangeReverse", true);
  return true;
}();

}  // namespace
