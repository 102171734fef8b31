// dpmd::tabulate*, the ops of compressed models (tabulated embedding nets, kernels/tabulate.h):
//   tabulate_build(net, grid) -> coef [n1 + n2, 6, M] f64           (compression time)
//   tabulate(coef, grid, net, s [*]) -> G [*, M]                      (se_atten strip, DPA-2)
//   tabulate_fusion(coef, grid, net, s [B, J], em [B, J, C]) -> [B, M, C]
//       = sum_j G(s_bj)^T em_bj                                       (se_e2_a, se_e2_r)
// with CPU, Meta (symbolic shapes, for .pt2 export) and Autograd kernels. Gradients are first
// order: forces and virials need dE/ds and dE/dem only; a second backward through the backward
// ops is an error (not zeros), so compressed models are for inference, not training. coef, grid
// and net get no gradient.
//
// Overflow check (grid[7] = check_frequency > 0): every that many forward calls, pairs seen
// beyond the training-data table (and beyond both tables: the net evaluated exactly) since the
// last report are printed on stderr. Values are exact either way.
//
// Built into libdpmd_torch_ops.so with dpmd::ghost_exchange (same `dpmd` library namespace).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

#include "tabulate.h"

namespace {

namespace K = dpmd::kernels;

struct Parsed {
  K::Net net;
  K::Grid grid;
  at::Tensor net_c, grid_c;  // keep the parsed buffers alive
};

Parsed parse(const at::Tensor& grid, const at::Tensor& net) {
  TORCH_CHECK(grid.scalar_type() == at::kDouble && net.scalar_type() == at::kDouble,
              "dpmd::tabulate: grid and net must be float64");
  Parsed p;
  p.grid_c = grid.contiguous();
  p.net_c = net.contiguous();
  try {
    p.grid = K::parse_grid(p.grid_c.data_ptr<double>(), p.grid_c.numel());
    p.net = K::parse_net(p.net_c.data_ptr<double>(), p.net_c.numel());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "dpmd::tabulate: ", e.what());
  }
  return p;
}

template <typename T>
K::Table<T> table_of(const at::Tensor& coef, const Parsed& p) {
  TORCH_CHECK(coef.dim() == 3 && coef.size(1) == 6 && coef.size(0) == p.grid.n1 + p.grid.n2 &&
                  coef.size(2) == p.net.nout(),
              "dpmd::tabulate: coef [n1 + n2, 6, M] does not match its grid and net");
  return K::Table<T>{coef.data_ptr<T>(), coef.size(2), p.grid, &p.net};
}

at::Tensor build_cpu(const at::Tensor& net, const at::Tensor& grid) {
  Parsed p = parse(grid, net);
  at::Tensor coef = at::empty({p.grid.n1 + p.grid.n2, 6, p.net.nout()}, net.options());
  K::build_table<double>(p.net, p.grid, coef.data_ptr<double>());
  return coef;
}

at::Tensor tab_cpu(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& s) {
  TORCH_CHECK(s.scalar_type() == coef.scalar_type(), "dpmd::tabulate: s and coef dtypes differ");
  Parsed p = parse(grid, net);
  at::Tensor sc = s.contiguous(), cc = coef.contiguous();
  auto shape = s.sizes().vec();
  shape.push_back(cc.size(2));
  at::Tensor out = at::empty(shape, s.options());
  const int64_t n = sc.numel();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "dpmd::tabulate", [&] {
    auto t = table_of<scalar_t>(cc, p);
    at::parallel_for(0, n, 1024, [&](int64_t a, int64_t b) {
      K::tabulate_forward<scalar_t>(t, sc.data_ptr<scalar_t>(), a, b, out.data_ptr<scalar_t>(), K::overflow_counter(p.grid));
    });
  });
  K::overflow_report(p.grid);
  return out;
}

at::Tensor tab_bw_cpu(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& s,
                      const at::Tensor& dg) {
  Parsed p = parse(grid, net);
  at::Tensor sc = s.contiguous(), cc = coef.contiguous(), dc = dg.contiguous().to(s.scalar_type());
  at::Tensor ds = at::empty_like(sc);
  const int64_t n = sc.numel();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "dpmd::tabulate_backward", [&] {
    auto t = table_of<scalar_t>(cc, p);
    at::parallel_for(0, n, 1024, [&](int64_t a, int64_t b) {
      K::tabulate_backward<scalar_t>(t, sc.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(), a, b,
                                     ds.data_ptr<scalar_t>());
    });
  });
  return ds;
}

void check_fusion(const at::Tensor& coef, const at::Tensor& s, const at::Tensor& em) {
  TORCH_CHECK(s.dim() == 2 && em.dim() == 3 && em.size(0) == s.size(0) && em.size(1) == s.size(1),
              "dpmd::tabulate_fusion: s [B, J] and em [B, J, C] expected");
  TORCH_CHECK(s.scalar_type() == coef.scalar_type() && em.scalar_type() == coef.scalar_type(),
              "dpmd::tabulate_fusion: s, em and coef dtypes differ");
}

at::Tensor fusion_cpu(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& s,
                      const at::Tensor& em) {
  check_fusion(coef, s, em);
  Parsed p = parse(grid, net);
  at::Tensor sc = s.contiguous(), ec = em.contiguous(), cc = coef.contiguous();
  const int64_t nb = s.size(0), nj = s.size(1), nc = em.size(2);
  at::Tensor out = at::empty({nb, cc.size(2), nc}, em.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "dpmd::tabulate_fusion", [&] {
    auto t = table_of<scalar_t>(cc, p);
    at::parallel_for(0, nb, 16, [&](int64_t a, int64_t b) {
      K::fusion_forward<scalar_t>(t, sc.data_ptr<scalar_t>(), ec.data_ptr<scalar_t>(), nj, nc, a, b,
                                  out.data_ptr<scalar_t>(), K::overflow_counter(p.grid));
    });
  });
  K::overflow_report(p.grid);
  return out;
}

std::tuple<at::Tensor, at::Tensor> fusion_bw_cpu(const at::Tensor& coef, const at::Tensor& grid,
                                                 const at::Tensor& net, const at::Tensor& s, const at::Tensor& em,
                                                 const at::Tensor& dout) {
  check_fusion(coef, s, em);
  Parsed p = parse(grid, net);
  at::Tensor sc = s.contiguous(), ec = em.contiguous(), cc = coef.contiguous();
  at::Tensor dc = dout.to(s.scalar_type()).contiguous();
  const int64_t nb = s.size(0), nj = s.size(1), nc = em.size(2);
  at::Tensor ds = at::empty_like(sc), dem = at::empty_like(ec);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "dpmd::tabulate_fusion_backward", [&] {
    auto t = table_of<scalar_t>(cc, p);
    at::parallel_for(0, nb, 16, [&](int64_t a, int64_t b) {
      K::fusion_backward<scalar_t>(t, sc.data_ptr<scalar_t>(), ec.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(),
                                   nj, nc, a, b, ds.data_ptr<scalar_t>(), dem.data_ptr<scalar_t>());
    });
  });
  return {ds, dem};
}

// -- Meta: shapes only (symbolic), for make_fx / torch.export -------------------------------------
at::Tensor build_meta(const at::Tensor&, const at::Tensor&) {
  TORCH_CHECK(false, "dpmd::tabulate_build has no symbolic form (compression time only)");
}

at::Tensor tab_meta(const at::Tensor& coef, const at::Tensor&, const at::Tensor&, const at::Tensor& s) {
  auto shape = s.sym_sizes().vec();
  shape.push_back(coef.sym_size(2));
  return at::empty_symint(shape, s.options());
}

at::Tensor tab_bw_meta(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor& s,
                       const at::Tensor&) {
  return at::empty_symint(s.sym_sizes(), s.options());
}

at::Tensor fusion_meta(const at::Tensor& coef, const at::Tensor&, const at::Tensor&, const at::Tensor& s,
                       const at::Tensor& em) {
  return at::empty_symint({s.sym_size(0), coef.sym_size(2), em.sym_size(2)}, em.options());
}

std::tuple<at::Tensor, at::Tensor> fusion_bw_meta(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor& s, const at::Tensor& em, const at::Tensor&) {
  return {at::empty_symint(s.sym_sizes(), s.options()), at::empty_symint(em.sym_sizes(), em.options())};
}

// -- Autograd ------------------------------------------------------------------------------------
template <typename Sig>
auto op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using Tab = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
using TabBw = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&);
using Fus = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       const at::Tensor&);
using FusBw = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                 const at::Tensor&, const at::Tensor&, const at::Tensor&);

class TabFn : public torch::autograd::Function<TabFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& coef, const at::Tensor& grid,
                            const at::Tensor& net, const at::Tensor& s) {
    ctx->save_for_backward({coef, grid, net, s});
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<Tab>("dpmd::tabulate");
    return f.call(coef, grid, net, s);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    static auto f = op<TabBw>("dpmd::tabulate_backward");
    return {at::Tensor(), at::Tensor(), at::Tensor(), f.call(v[0], v[1], v[2], v[3], grads[0])};
  }
};

class FusionFn : public torch::autograd::Function<FusionFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& coef, const at::Tensor& grid,
                            const at::Tensor& net, const at::Tensor& s, const at::Tensor& em) {
    ctx->save_for_backward({coef, grid, net, s, em});
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<Fus>("dpmd::tabulate_fusion");
    return f.call(coef, grid, net, s, em);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    static auto f = op<FusBw>("dpmd::tabulate_fusion_backward");
    auto [ds, dem] = f.call(v[0], v[1], v[2], v[3], v[4], grads[0]);
    return {at::Tensor(), at::Tensor(), at::Tensor(), ds, dem};
  }
};

// The backward ops under autograd (a create_graph backward, e.g. force training): their own
// derivative is not implemented, so a second backward through them is an error, not zeros.
[[noreturn]] void no_second_order(const char* name) {
  TORCH_CHECK(false, name, ": second derivatives are not implemented (a compressed model is for ",
              "inference: forces and virials; train the uncompressed model)");
}

class TabBwFn : public torch::autograd::Function<TabBwFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& coef, const at::Tensor& grid,
                            const at::Tensor& net, const at::Tensor& s, const at::Tensor& grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<TabBw>("dpmd::tabulate_backward");
    return f.call(coef, grid, net, s, grad);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    no_second_order("dpmd::tabulate");
  }
};

class FusionBwFn : public torch::autograd::Function<FusionBwFn> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext*, const at::Tensor& coef,
                                                const at::Tensor& grid, const at::Tensor& net,
                                                const at::Tensor& s, const at::Tensor& em,
                                                const at::Tensor& grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<FusBw>("dpmd::tabulate_fusion_backward");
    auto [ds, dem] = f.call(coef, grid, net, s, em, grad);
    return {ds, dem};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    no_second_order("dpmd::tabulate_fusion");
  }
};

at::Tensor tab_bw_autograd(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net,
                           const at::Tensor& s, const at::Tensor& grad) {
  return TabBwFn::apply(coef, grid, net, s, grad);
}

std::tuple<at::Tensor, at::Tensor> fusion_bw_autograd(const at::Tensor& coef, const at::Tensor& grid,
                                                      const at::Tensor& net, const at::Tensor& s,
                                                      const at::Tensor& em, const at::Tensor& grad) {
  auto r = FusionBwFn::apply(coef, grid, net, s, em, grad);
  return {r[0], r[1]};
}

at::Tensor tab_autograd(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& s) {
  return TabFn::apply(coef, grid, net, s);
}

at::Tensor fusion_autograd(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net,
                           const at::Tensor& s, const at::Tensor& em) {
  return FusionFn::apply(coef, grid, net, s, em);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dpmd, m) {
  m.def("tabulate_build(Tensor net, Tensor grid) -> Tensor");
  m.def("tabulate(Tensor coef, Tensor grid, Tensor net, Tensor s) -> Tensor");
  m.def("tabulate_backward(Tensor coef, Tensor grid, Tensor net, Tensor s, Tensor grad) -> Tensor");
  m.def("tabulate_fusion(Tensor coef, Tensor grid, Tensor net, Tensor s, Tensor em) -> Tensor");
  m.def("tabulate_fusion_backward(Tensor coef, Tensor grid, Tensor net, Tensor s, Tensor em, "
        "Tensor grad) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dpmd, CPU, m) {
  m.impl("tabulate_build", TORCH_FN(build_cpu));
  m.impl("tabulate", TORCH_FN(tab_cpu));
  m.impl("tabulate_backward", TORCH_FN(tab_bw_cpu));
  m.impl("tabulate_fusion", TORCH_FN(fusion_cpu));
  m.impl("tabulate_fusion_backward", TORCH_FN(fusion_bw_cpu));
}

TORCH_LIBRARY_IMPL(dpmd, Meta, m) {
  m.impl("tabulate_build", TORCH_FN(build_meta));
  m.impl("tabulate", TORCH_FN(tab_meta));
  m.impl("tabulate_backward", TORCH_FN(tab_bw_meta));
  m.impl("tabulate_fusion", TORCH_FN(fusion_meta));
  m.impl("tabulate_fusion_backward", TORCH_FN(fusion_bw_meta));
}

TORCH_LIBRARY_IMPL(dpmd, Autograd, m) {
  m.impl("tabulate", TORCH_FN(tab_autograd));
  m.impl("tabulate_fusion", TORCH_FN(fusion_autograd));
  m.impl("tabulate_backward", TORCH_FN(tab_bw_autograd));
  m.impl("tabulate_fusion_backward", TORCH_FN(fusion_bw_autograd));
}
