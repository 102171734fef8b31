// dpmd::ghost_exchange, the one framework op of message passing (docs/core_contract.md).
//
// Frozen message-passing models call it between GNN layers. Its `handle` input is either
//  - 0: in one process, every ghost row is its owner's row (`mapping`), and the backward
//    sums ghost gradients onto the owners (the same as model/comm.py's MappingExchange); or
//  - the address of the engine's dpmd_exchange (core/include/dpmd_c.h): forward fills ghost
//    rows from their owners (LAMMPS: comm->forward_comm, across MPI ranks), backward sends
//    ghost rows' gradients back to their owners (comm->reverse_comm).
// Only node-feature rows move: nothing else of the model is recomputed or communicated.
//
// Built into libdpmd_torch_ops.so, which the torch backend links and Python loads with
// torch.ops.load_library (deepmd_md/backends/torch/ops.py) to trace and run frozen models.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <stdexcept>
#include <string>

#include "dpmd_c.h"

namespace {

const dpmd_exchange* exchange_of(const at::Tensor& handle) {
  TORCH_CHECK(handle.numel() == 1 && handle.scalar_type() == at::kLong,
              "dpmd::ghost_exchange: handle must be one int64");
  const int64_t h = handle.item<int64_t>();
  return reinterpret_cast<const dpmd_exchange*>(h);
}

// rows [nall, ncol] float64, contiguous: what the engine's callbacks read and write
void call_engine(const dpmd_exchange* ex, bool forward, at::Tensor& rows) {
  const int ncol = int(rows.size(1));
  const int rc = forward ? ex->forward(ex->ctx, rows.data_ptr<double>(), ncol)
                         : ex->reverse(ex->ctx, rows.data_ptr<double>(), ncol);
  TORCH_CHECK(rc == 0, "dpmd::ghost_exchange: the engine's ", forward ? "forward" : "reverse",
              " exchange of ", ncol, " columns failed (status ", rc, ")");
}

// g [nf, nloc, *f] -> [nf, nall, *f], nall = mapping.size(1)
at::Tensor exchange_cpu(const at::Tensor& g, const at::Tensor& mapping, const at::Tensor& handle) {
  TORCH_CHECK(g.dim() >= 2 && mapping.dim() == 2 && mapping.size(0) == g.size(0),
              "dpmd::ghost_exchange: g [nf, nloc, ...] and mapping [nf, nall] expected");
  const dpmd_exchange* ex = exchange_of(handle);
  const int64_t nf = g.size(0), nloc = g.size(1), nall = mapping.size(1);
  auto shape = g.sizes().vec();
  shape[1] = nall;
  if (!ex) {
    auto idx = mapping.reshape({nf, nall, 1}).expand({nf, nall, g[0][0].numel()});
    return at::gather(g.reshape({nf, nloc, -1}), 1, idx).reshape(shape);
  }
  TORCH_CHECK(nf == 1, "dpmd::ghost_exchange: an engine exchange takes one frame");
  at::Tensor rows = at::zeros({nall, g[0][0].numel()}, g.options().dtype(at::kDouble));
  rows.narrow(0, 0, nloc).copy_(g.reshape({nloc, -1}));
  call_engine(ex, true, rows);
  return rows.to(g.scalar_type()).reshape(shape);
}

// grad [nf, nall, *f] -> [nf, nloc, *f]: ghost rows summed onto their owners
at::Tensor reverse_cpu(const at::Tensor& grad, const at::Tensor& mapping, const at::Tensor& handle,
                       c10::SymInt nloc_s) {
  const int64_t nloc = nloc_s.expect_int();
  const dpmd_exchange* ex = exchange_of(handle);
  const int64_t nf = grad.size(0), nall = grad.size(1);
  auto shape = grad.sizes().vec();
  shape[1] = nloc;
  if (!ex) {
    const int64_t ncol = nall > 0 ? grad[0][0].numel() : 1;
    auto idx = mapping.reshape({nf, nall, 1}).expand({nf, nall, ncol});
    return at::zeros({nf, nloc, ncol}, grad.options())
        .scatter_add(1, idx, grad.reshape({nf, nall, ncol}))
        .reshape(shape);
  }
  TORCH_CHECK(nf == 1, "dpmd::ghost_exchange: an engine exchange takes one frame");
  at::Tensor rows = grad.reshape({nall, -1}).to(at::kDouble).contiguous().clone();
  call_engine(ex, false, rows);
  return rows.narrow(0, 0, nloc).to(grad.scalar_type()).reshape(shape);
}

at::Tensor exchange_meta(const at::Tensor& g, const at::Tensor& mapping, const at::Tensor&) {
  auto shape = g.sym_sizes().vec();
  shape[1] = mapping.sym_size(1);
  return at::empty_symint(shape, g.options());
}

at::Tensor reverse_meta(const at::Tensor& grad, const at::Tensor&, const at::Tensor&, c10::SymInt nloc) {
  auto shape = grad.sym_sizes().vec();
  shape[1] = nloc;
  return at::empty_symint(shape, grad.options());
}

at::Tensor call_exchange(const at::Tensor& g, const at::Tensor& mapping, const at::Tensor& handle) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dpmd::ghost_exchange", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(g, mapping, handle);
}

at::Tensor call_reverse(const at::Tensor& grad, const at::Tensor& mapping, const at::Tensor& handle,
                        c10::SymInt nloc) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("dpmd::ghost_exchange_reverse", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::SymInt)>();
  return op.call(grad, mapping, handle, std::move(nloc));
}

// Autograd: the backward of the forward exchange is the reverse exchange (first order only:
// forces need no second derivative of the exchange).
class GhostExchange : public torch::autograd::Function<GhostExchange> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& g, const at::Tensor& mapping,
                            const at::Tensor& handle) {
    ctx->save_for_backward({mapping, handle});
    ctx->saved_data["nloc"] = g.sym_size(1);
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_exchange(g, mapping, handle);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {call_reverse(grads[0], saved[0], saved[1], ctx->saved_data["nloc"].toSymInt()), at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor exchange_autograd(const at::Tensor& g, const at::Tensor& mapping, const at::Tensor& handle) {
  return GhostExchange::apply(g, mapping, handle);
}

}  // namespace

TORCH_LIBRARY(dpmd, m) {
  m.def("ghost_exchange(Tensor g, Tensor mapping, Tensor handle) -> Tensor");
  m.def("ghost_exchange_reverse(Tensor grad, Tensor mapping, Tensor handle, SymInt nloc) -> Tensor");
}

TORCH_LIBRARY_IMPL(dpmd, CPU, m) {
  m.impl("ghost_exchange", TORCH_FN(exchange_cpu));
  m.impl("ghost_exchange_reverse", TORCH_FN(reverse_cpu));
}

TORCH_LIBRARY_IMPL(dpmd, Meta, m) {
  m.impl("ghost_exchange", TORCH_FN(exchange_meta));
  m.impl("ghost_exchange_reverse", TORCH_FN(reverse_meta));
}

TORCH_LIBRARY_IMPL(dpmd, Autograd, m) { m.impl("ghost_exchange", TORCH_FN(exchange_autograd)); }
