// What every op of libdpmd_tf_ops.so needs from TensorFlow's C op/kernel API: failing a call
// with a message, owned input/output tensors, and shape-function handles freed on return.
// Header-only, everything in an anonymous namespace: each op file gets its own copy (the
// library hides its symbols).
#pragma once

#include <tensorflow/c/kernels.h>
#include <tensorflow/c/ops.h>
#include <tensorflow/c/tf_status.h>
#include <tensorflow/c/tf_tensor.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// Fails the op call with TF's InvalidArgument and msg (the caller returns right after).
inline void fail(TF_OpKernelContext* ctx, const std::string& msg) {
  TF_Status* s = TF_NewStatus();
  TF_SetStatus(s, TF_INVALID_ARGUMENT, msg.c_str());
  TF_OpKernelContext_Failure(ctx, s);
  TF_DeleteStatus(s);
}

// An input or output tensor of one call, released when the call returns.
struct In {
  TF_Tensor* t = nullptr;
  In() = default;
  In(const In&) = delete;
  In& operator=(const In&) = delete;
  ~In() { if (t) TF_DeleteTensor(t); }
  int64_t dim(int d) const { return TF_Dim(t, d); }
  int rank() const { return TF_NumDims(t); }
  int64_t size() const { return TF_TensorElementCount(t); }
  template <typename T>
  T* data() const { return static_cast<T*>(TF_TensorData(t)); }
};

// input i into `in`; false (failure set) when TF cannot give it
inline bool get(TF_OpKernelContext* ctx, int i, In& in) {
  TF_Status* s = TF_NewStatus();
  TF_GetInput(ctx, i, &in.t, s);
  const bool ok = TF_GetCode(s) == TF_OK;
  if (!ok) TF_OpKernelContext_Failure(ctx, s);
  TF_DeleteStatus(s);
  return ok;
}

// output i of the given dims (owned by `out`), false (failure set) when TF cannot allocate it
template <typename T>
bool alloc(TF_OpKernelContext* ctx, int i, TF_DataType dt, const std::vector<int64_t>& dims, In& out) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  TF_Status* s = TF_NewStatus();
  out.t = TF_AllocateOutput(ctx, i, dt, dims.data(), int(dims.size()), sizeof(T) * size_t(n), s);
  const bool ok = TF_GetCode(s) == TF_OK;
  if (!ok) TF_OpKernelContext_Failure(ctx, s);
  TF_DeleteStatus(s);
  return ok;
}

// the ops keep no per-kernel state
inline void* create(TF_OpKernelConstruction*) { return nullptr; }
inline void destroy(void*) {}

// Shape-function helper: every handle it makes is freed with it.
struct Shapes {
  TF_ShapeInferenceContext* ctx;
  TF_Status* st;
  std::vector<TF_ShapeHandle*> owned;
  ~Shapes() { for (auto* h : owned) TF_DeleteShapeHandle(h); }
  TF_ShapeHandle* fresh() { owned.push_back(TF_NewShapeHandle()); return owned.back(); }
  TF_ShapeHandle* input(int i) {
    TF_ShapeHandle* h = fresh();
    TF_ShapeInferenceContextGetInput(ctx, i, h, st);
    return h;
  }
  TF_ShapeHandle* sub(TF_ShapeHandle* h, int64_t a, int64_t b) {
    TF_ShapeHandle* r = fresh();
    TF_ShapeInferenceContextSubshape(ctx, h, a, b, r, st);
    return r;
  }
  TF_ShapeHandle* cat(TF_ShapeHandle* a, TF_ShapeHandle* b) {
    TF_ShapeHandle* r = fresh();
    TF_ShapeInferenceContextConcatenateShapes(ctx, a, b, r, st);
    return r;
  }
  TF_ShapeHandle* ranked(int i, int64_t rank) {
    TF_ShapeHandle* h = fresh();
    TF_ShapeInferenceContextWithRank(ctx, input(i), rank, h, st);
    return h;
  }
  void out(int i, TF_ShapeHandle* h) { TF_ShapeInferenceContextSetOutput(ctx, i, h, st); }
  bool ok() const { return TF_GetCode(st) == TF_OK; }
};

// Registers op `name` (attr T in {float, double}) and its CPU kernel; a failure is printed, the
// library still loads (TF then says the op is not registered).
inline void register_op(const char* name, std::vector<const char*> inputs, std::vector<const char*> outputs,
                 void (*shape)(TF_ShapeInferenceContext*, TF_Status*), void (*kernel)(void*, TF_OpKernelContext*)) {
  TF_Status* s = TF_NewStatus();
  TF_OpDefinitionBuilder* b = TF_NewOpDefinitionBuilder(name);
  TF_OpDefinitionBuilderAddAttr(b, "T: {float, double}");
  for (const char* in : inputs) TF_OpDefinitionBuilderAddInput(b, in);
  for (const char* out : outputs) TF_OpDefinitionBuilderAddOutput(b, out);
  TF_OpDefinitionBuilderSetShapeInferenceFunction(b, shape);
  TF_RegisterOpDefinition(b, s);
  TF_KernelBuilder* kb = TF_NewKernelBuilder(name, "CPU", create, kernel, destroy);
  TF_RegisterKernelBuilder(name, kb, s);
  if (TF_GetCode(s) != TF_OK) std::fprintf(stderr, "deepmd_md: registering %s: %s\n", name, TF_Message(s));
  TF_DeleteStatus(s);
}

}  // namespace
