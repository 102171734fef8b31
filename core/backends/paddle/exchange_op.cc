// dpmd_ghost_exchange, the Paddle form of dpmd::ghost_exchange, the one framework op of message
// passing (docs/core_contract.md), as a Paddle custom operator (paddle/extension.h):
//
//   dpmd_ghost_exchange(g [nf, nloc, *f], mapping [nf, nall] i64, handle [1] i64) -> [nf, nall, *f]
//   its grad op: grad(out) [nf, nall, *f] -> grad(g) [nf, nloc, *f], the reverse exchange
//
// handle 0: in this process, ghost rows are their owners' rows (gather by mapping; the reverse
// sums ghost rows onto their owners). Otherwise the address of a dpmd_exchange: the engine fills
// ghost rows (forward) or adds them into their owners (reverse), across MPI ranks. First order
// only: forces need no second derivative of the exchange.
//
// Built into libdpmd_paddle_ops.so (with the tabulate ops), registered by Python
// (deepmd_md/backends/paddle/ops.py) to trace frozen programs and by the core's Paddle backend
// before it creates a predictor.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "dpmd_c.h"
#include "paddle/extension.h"

namespace {

const dpmd_exchange* exchange_of(const paddle::Tensor& handle) {
  PD_CHECK(handle.numel() == 1 && handle.dtype() == paddle::DataType::INT64,
           "dpmd_ghost_exchange: handle must be one int64");
  return reinterpret_cast<const dpmd_exchange*>(*handle.data<int64_t>());
}

int64_t columns(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t d = 2; d < shape.size(); ++d) n *= shape[d];
  return n;
}

template <typename T>
void run(const paddle::Tensor& x, const paddle::Tensor& mapping, const dpmd_exchange* ex, bool reverse,
         int64_t nloc, paddle::Tensor& out) {
  const int64_t nf = x.shape()[0], nin = x.shape()[1], nall = mapping.shape()[1], ncol = columns(x.shape());
  const T* src = x.data<T>();
  T* dst = out.data<T>();
  const int64_t* mp = mapping.data<int64_t>();
  if (!ex) {  // in this process, by mapping
    if (!reverse) {
      for (int64_t f = 0; f < nf; ++f)
        for (int64_t j = 0; j < nall; ++j) {
          const int64_t o = mp[f * nall + j];
          PD_CHECK(o >= 0 && o < nin, "dpmd_ghost_exchange: mapping out of range");
          std::memcpy(dst + (f * nall + j) * ncol, src + (f * nin + o) * ncol, sizeof(T) * size_t(ncol));
        }
    } else {
      std::memset(dst, 0, sizeof(T) * size_t(nf * nloc * ncol));
      for (int64_t f = 0; f < nf; ++f)
        for (int64_t j = 0; j < nall; ++j) {
          const int64_t o = mp[f * nall + j];
          PD_CHECK(o >= 0 && o < nloc, "dpmd_ghost_exchange_grad: mapping out of range");
          T* d = dst + (f * nloc + o) * ncol;
          const T* g = src + (f * nall + j) * ncol;
          for (int64_t c = 0; c < ncol; ++c) d[c] += g[c];
        }
    }
    return;
  }
  PD_CHECK(nf == 1, "dpmd_ghost_exchange: an engine exchange takes one frame");
  std::vector<double> rows(size_t(nall * ncol), 0.0);
  const int64_t nsrc = reverse ? nall : nloc;
  for (int64_t i = 0; i < nsrc * ncol; ++i) rows[size_t(i)] = double(src[i]);
  const int rc = reverse ? ex->reverse(ex->ctx, rows.data(), int(ncol)) : ex->forward(ex->ctx, rows.data(), int(ncol));
  PD_CHECK(rc == 0, "dpmd_ghost_exchange: the engine's ", reverse ? "reverse" : "forward", " exchange of ",
           ncol, " columns failed (status ", rc, ")");
  const int64_t ndst = reverse ? nloc : nall;
  for (int64_t i = 0; i < ndst * ncol; ++i) dst[i] = T(rows[size_t(i)]);
}

std::vector<paddle::Tensor> exchange(const paddle::Tensor& x, const paddle::Tensor& mapping,
                                     const paddle::Tensor& handle, bool reverse, int64_t nloc) {
  PD_CHECK(x.is_cpu() && mapping.is_cpu() && handle.is_cpu(), "dpmd_ghost_exchange: CPU tensors expected");
  PD_CHECK(x.shape().size() >= 2 && mapping.shape().size() == 2 && mapping.shape()[0] == x.shape()[0] &&
               mapping.dtype() == paddle::DataType::INT64,
           "dpmd_ghost_exchange: x [nf, n, ...] and mapping [nf, nall] int64 expected");
  const dpmd_exchange* ex = exchange_of(handle);
  std::vector<int64_t> shape = x.shape();
  shape[1] = reverse ? nloc : mapping.shape()[1];
  paddle::Tensor out = paddle::empty(shape, x.dtype(), paddle::CPUPlace());
  if (x.dtype() == paddle::DataType::FLOAT64) {
    run<double>(x, mapping, ex, reverse, nloc, out);
  } else if (x.dtype() == paddle::DataType::FLOAT32) {
    run<float>(x, mapping, ex, reverse, nloc, out);
  } else {
    PD_THROW("dpmd_ghost_exchange: float32 or float64 features expected");
  }
  return {out};
}

std::vector<paddle::Tensor> forward(const paddle::Tensor& g, const paddle::Tensor& mapping,
                                    const paddle::Tensor& handle) {
  return exchange(g, mapping, handle, false, g.shape()[1]);
}

// the reverse exchange; g is an input only for its row count nloc
std::vector<paddle::Tensor> backward(const paddle::Tensor& g, const paddle::Tensor& mapping,
                                     const paddle::Tensor& handle, const paddle::Tensor& dout) {
  return exchange(dout, mapping, handle, true, g.shape()[1]);
}

std::vector<std::vector<int64_t>> forward_shape(const std::vector<int64_t>& g, const std::vector<int64_t>& mapping,
                                                const std::vector<int64_t>&) {
  std::vector<int64_t> out = g;
  out[1] = mapping[1];
  return {out};
}

std::vector<paddle::DataType> forward_dtype(const paddle::DataType& g, const paddle::DataType&,
                                            const paddle::DataType&) {
  return {g};
}

}  // namespace

PD_BUILD_OP(dpmd_ghost_exchange)
    .Inputs({"g", "mapping", "handle"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(forward))
    .SetInferShapeFn(PD_INFER_SHAPE(forward_shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(forward_dtype));

PD_BUILD_GRAD_OP(dpmd_ghost_exchange)
    .Inputs({"g", "mapping", "handle", paddle::Grad("out")})
    .Outputs({paddle::Grad("g")})
    .SetKernelFn(PD_KERNEL(backward));

// -- registration from C++ (the core's Paddle backend, a process without Python) -------------------
// Paddle registers a custom-op library with paddle::framework::RegisterOperatorWithMetaInfoMap
// (libpaddle.so; exported, not in the wheel's headers): the legacy operator table and the PIR
// custom-op dialect that Paddle Inference's programs resolve `custom_op.NAME` against.
// (LoadOpMetaInfoAndRegisterOp, the route of Python's load_op_meta_info_and_register_op, crashes
// outside Python: its library search path comes from a flag only the Python module sets.) The
// function returns a container of strings that we do not use: declared as an opaque object
// returned in memory, as every non-trivial class is on this ABI, and never destroyed.
namespace {
struct Opaque {
  alignas(16) unsigned char bytes[1024];
  ~Opaque() {}  // non-trivial: returned through a hidden pointer, as the real type is
};
Opaque register_map(const paddle::OpMetaInfoMap& map, void* dso)
    asm("_ZN6paddle9framework31RegisterOperatorWithMetaInfoMapB5cxx11ERKNS_13OpMetaInfoMapEPv");
}  // namespace

// 0 on success; else writes one line into err. Idempotent; `self` is this library's dlopen handle.
extern "C" __attribute__((visibility("default"))) int dpmd_paddle_register_ops(void* self, char* err,
                                                                               unsigned long errlen) {
  static std::mutex mu;
  static int state = 0;  // 0 not yet, 1 done, 2 failed
  static std::string why;
  std::lock_guard<std::mutex> lock(mu);
  if (state == 0) {
    try {
      static Opaque keep = register_map(paddle::OpMetaInfoMap::Instance(), self);
      (void)keep;
      state = 1;
    } catch (const std::exception& e) {
      why = e.what();
      state = 2;
    }
  }
  if (state == 2 && err && errlen) std::snprintf(err, errlen, "%s", why.c_str());
  return state == 1 ? 0 : 1;
}
