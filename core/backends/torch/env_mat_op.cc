// dpmd::env_mat, the fused environment matrix of compressed models (kernels/env_mat.h):
//   env_mat(coord [nf, nall, 3], nlist [nf, nloc, nnei], atype [nf, >= nloc], avg [nt, C],
//           std [nt, C], rcut_smth, rcut) -> [nf, nloc, nnei, C]    (C = 4, or 1: radial)
//   = (env_matrix(coord, nlist) - avg[atype_i]) / std[atype_i]     (deepmd_md/model/env.py)
//   env_mat_backward(coord, nlist, atype, std, grad, rcut_smth, rcut) -> grad of coord
// with CPU, Meta (symbolic shapes, for .pt2 export) and Autograd kernels. One op instead of
// the gather / sqrt / switch / normalisation graph and its backward (an index scatter in C++).
// First order only, like dpmd::tabulate_fusion: compressed models are for inference; avg, std,
// nlist and atype get no gradient.
//
//   se_a_tab(coef, grid, net, coord, nlist, atype, avg, std, rcut_smth, rcut, skip_empty)
//       -> [nf, nloc, M, 4] = sum_k G(row_k[0]) (x) em_k                   (kernels/env_mat.h)
// the compressed se_e2_a block in one op: env_mat, then dpmd::tabulate_fusion's kernel on its
// rows (em = the rows; 0 for empty slots when skip_empty), with no framework ops between; its
// backward goes from the output's gradient straight to the coordinates'.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "env_mat.h"

namespace {

namespace K = dpmd::kernels;

struct Args {
  at::Tensor coord, nlist, atype, std, avg;
  int64_t nf, nall, nloc, nnei, nat, ncol;
};

Args check(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& avg,
           const at::Tensor& std) {
  TORCH_CHECK(coord.dim() == 3 && coord.size(2) == 3, "dpmd::env_mat: coord [nf, nall, 3] expected");
  TORCH_CHECK(nlist.dim() == 3 && nlist.size(0) == coord.size(0), "dpmd::env_mat: nlist [nf, nloc, nnei] expected");
  TORCH_CHECK(atype.dim() == 2 && atype.size(0) == coord.size(0) && atype.size(1) >= nlist.size(1),
              "dpmd::env_mat: atype [nf, >= nloc] expected");
  TORCH_CHECK(nlist.size(1) <= coord.size(1), "dpmd::env_mat: more centers than coordinates");
  TORCH_CHECK(std.dim() == 2 && (std.size(1) == 4 || std.size(1) == 1) && avg.sizes() == std.sizes(),
              "dpmd::env_mat: avg and std [ntypes, 4 or 1] expected");
  Args a;
  const auto dt = coord.scalar_type();
  a.coord = coord.contiguous();
  a.nlist = nlist.to(at::kLong).contiguous();
  a.atype = atype.to(at::kLong).contiguous();
  a.avg = avg.to(dt).contiguous();
  a.std = std.to(dt).contiguous();
  a.nf = coord.size(0), a.nall = coord.size(1), a.nloc = nlist.size(1), a.nnei = nlist.size(2);
  a.nat = atype.size(1), a.ncol = std.size(1);
  const int64_t bad = K::env_mat_bad_index(a.nlist.data_ptr<int64_t>(), a.nlist.numel(), a.nall);
  TORCH_CHECK(bad == -2, "dpmd::env_mat: neighbor index ", bad, " outside [-1, ", a.nall, ")");
  const int64_t* t = a.atype.data_ptr<int64_t>();
  for (int64_t f = 0; f < a.nf; ++f)
    for (int64_t i = 0; i < a.nloc; ++i)
      TORCH_CHECK(t[f * a.nat + i] >= 0 && t[f * a.nat + i] < std.size(0), "dpmd::env_mat: center type ",
                  t[f * a.nat + i], " outside [0, ", std.size(0), ")");
  return a;
}

at::Tensor env_cpu(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& avg,
                   const at::Tensor& std, double rcut_smth, double rcut) {
  Args a = check(coord, nlist, atype, avg, std);
  at::Tensor out = at::empty({a.nf, a.nloc, a.nnei, a.ncol}, coord.options());
  const K::EnvMatParams p{rcut_smth, rcut, a.ncol};
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "dpmd::env_mat", [&] {
    for (int64_t f = 0; f < a.nf; ++f) {
      const scalar_t* c = a.coord.data_ptr<scalar_t>() + f * a.nall * 3;
      const int64_t* nl = a.nlist.data_ptr<int64_t>() + f * a.nloc * a.nnei;
      const int64_t* at = a.atype.data_ptr<int64_t>() + f * a.nat;
      scalar_t* o = out.data_ptr<scalar_t>() + f * a.nloc * a.nnei * a.ncol;
      at::parallel_for(0, a.nloc, 64, [&](int64_t s, int64_t e) {
        K::env_mat_forward<scalar_t>(p, c, nl, at, a.avg.data_ptr<scalar_t>(), a.std.data_ptr<scalar_t>(),
                                     a.nnei, s, e, o);
      });
    }
  });
  return out;
}

at::Tensor env_bw_cpu(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype,
                      const at::Tensor& std, const at::Tensor& grad, double rcut_smth, double rcut) {
  Args a = check(coord, nlist, atype, std, std);
  at::Tensor g = grad.to(coord.scalar_type()).contiguous();
  TORCH_CHECK(g.dim() == 4 && g.size(0) == a.nf && g.size(1) == a.nloc && g.size(2) == a.nnei &&
                  g.size(3) == a.ncol,
              "dpmd::env_mat_backward: grad [nf, nloc, nnei, C] expected");
  at::Tensor out = at::zeros_like(a.coord);
  const K::EnvMatParams p{rcut_smth, rcut, a.ncol};
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "dpmd::env_mat_backward", [&] {
    for (int64_t f = 0; f < a.nf; ++f)  // serial scatter within a frame: deterministic sums
      K::env_mat_backward<scalar_t>(p, a.coord.data_ptr<scalar_t>() + f * a.nall * 3,
                                    a.nlist.data_ptr<int64_t>() + f * a.nloc * a.nnei,
                                    a.atype.data_ptr<int64_t>() + f * a.nat, a.std.data_ptr<scalar_t>(),
                                    g.data_ptr<scalar_t>() + f * a.nloc * a.nnei * a.ncol, a.nnei, 0, a.nloc,
                                    out.data_ptr<scalar_t>() + f * a.nall * 3);
  });
  return out;
}

// -- se_a_tab -------------------------------------------------------------------------------------
struct Tab {
  K::Net net;
  K::Grid grid;
  at::Tensor net_c, grid_c, coef_c;
};

Tab parse_tab(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& coord) {
  TORCH_CHECK(grid.scalar_type() == at::kDouble && net.scalar_type() == at::kDouble,
              "dpmd::se_a_tab: grid and net must be float64");
  TORCH_CHECK(coef.scalar_type() == coord.scalar_type(), "dpmd::se_a_tab: coef and coord dtypes differ");
  Tab t;
  t.grid_c = grid.contiguous();
  t.net_c = net.contiguous();
  t.coef_c = coef.contiguous();
  try {
    t.grid = K::parse_grid(t.grid_c.data_ptr<double>(), t.grid_c.numel());
    t.net = K::parse_net(t.net_c.data_ptr<double>(), t.net_c.numel());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "dpmd::se_a_tab: ", e.what());
  }
  TORCH_CHECK(coef.dim() == 3 && coef.size(1) == 6 && coef.size(0) == t.grid.n1 + t.grid.n2 &&
                  coef.size(2) == t.net.nout(),
              "dpmd::se_a_tab: coef [n1 + n2, 6, M] does not match its grid and net");
  return t;
}

at::Tensor se_a_cpu(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& coord,
                    const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& avg, const at::Tensor& std,
                    double rcut_smth, double rcut, bool skip_empty) {
  Args a = check(coord, nlist, atype, avg, std);
  TORCH_CHECK(a.ncol == 4, "dpmd::se_a_tab: avg and std [ntypes, 4] expected");
  Tab tb = parse_tab(coef, grid, net, coord);
  const int64_t m = tb.net.nout();
  at::Tensor out = at::empty({a.nf, a.nloc, m, 4}, coord.options());
  at::Tensor rows = at::empty({a.nloc, a.nnei, 4}, coord.options()), s = at::empty({a.nloc, a.nnei}, coord.options());
  const K::EnvMatParams p{rcut_smth, rcut, 4};
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "dpmd::se_a_tab", [&] {
    const K::Table<scalar_t> t{tb.coef_c.data_ptr<scalar_t>(), m, tb.grid, &tb.net};
    for (int64_t f = 0; f < a.nf; ++f)
      K::se_a_block_forward<scalar_t>(p, t, a.coord.data_ptr<scalar_t>() + f * a.nall * 3,
                                      a.nlist.data_ptr<int64_t>() + f * a.nloc * a.nnei,
                                      a.atype.data_ptr<int64_t>() + f * a.nat, a.avg.data_ptr<scalar_t>(),
                                      a.std.data_ptr<scalar_t>(), a.nnei, skip_empty, 0, a.nloc,
                                      rows.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                      out.data_ptr<scalar_t>() + f * a.nloc * m * 4, K::overflow_counter(tb.grid));
  });
  K::overflow_report(tb.grid);
  return out;
}

at::Tensor se_a_bw_cpu(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net, const at::Tensor& coord,
                       const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& avg, const at::Tensor& std,
                       double rcut_smth, double rcut, bool skip_empty, const at::Tensor& grad) {
  Args a = check(coord, nlist, atype, avg, std);
  Tab tb = parse_tab(coef, grid, net, coord);
  const int64_t m = tb.net.nout();
  at::Tensor g = grad.to(coord.scalar_type()).contiguous();
  TORCH_CHECK(g.dim() == 4 && g.size(0) == a.nf && g.size(1) == a.nloc && g.size(2) == m && g.size(3) == 4,
              "dpmd::se_a_tab_backward: grad [nf, nloc, M, 4] expected");
  at::Tensor out = at::zeros_like(a.coord);
  auto o = coord.options();
  at::Tensor rows = at::empty({a.nloc, a.nnei, 4}, o), grows = at::empty({a.nloc, a.nnei, 4}, o);
  at::Tensor s = at::empty({a.nloc, a.nnei}, o), ds = at::empty({a.nloc, a.nnei}, o);
  const K::EnvMatParams p{rcut_smth, rcut, 4};
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "dpmd::se_a_tab_backward", [&] {
    const K::Table<scalar_t> t{tb.coef_c.data_ptr<scalar_t>(), m, tb.grid, &tb.net};
    for (int64_t f = 0; f < a.nf; ++f)
      K::se_a_block_backward<scalar_t>(p, t, a.coord.data_ptr<scalar_t>() + f * a.nall * 3,
                                       a.nlist.data_ptr<int64_t>() + f * a.nloc * a.nnei,
                                       a.atype.data_ptr<int64_t>() + f * a.nat, a.avg.data_ptr<scalar_t>(),
                                       a.std.data_ptr<scalar_t>(), a.nloc, a.nnei, skip_empty,
                                       g.data_ptr<scalar_t>() + f * a.nloc * m * 4, rows.data_ptr<scalar_t>(),
                                       grows.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), ds.data_ptr<scalar_t>(),
                                       out.data_ptr<scalar_t>() + f * a.nall * 3);
  });
  return out;
}

// -- Meta: shapes only (symbolic), for make_fx / torch.export -------------------------------------
at::Tensor env_meta(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor&, const at::Tensor&,
                    const at::Tensor& std, double, double) {
  return at::empty_symint({nlist.sym_size(0), nlist.sym_size(1), nlist.sym_size(2), std.sym_size(1)},
                          coord.options());
}

at::Tensor env_bw_meta(const at::Tensor& coord, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       const at::Tensor&, double, double) {
  return at::empty_symint(coord.sym_sizes(), coord.options());
}

at::Tensor se_a_meta(const at::Tensor& coef, const at::Tensor&, const at::Tensor&, const at::Tensor& coord,
                     const at::Tensor& nlist, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                     double, bool) {
  return at::empty_symint({nlist.sym_size(0), nlist.sym_size(1), coef.sym_size(2), 4}, coord.options());
}

at::Tensor se_a_bw_meta(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor& coord,
                        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                        bool, const at::Tensor&) {
  return at::empty_symint(coord.sym_sizes(), coord.options());
}

// -- Autograd ------------------------------------------------------------------------------------
template <typename Sig>
auto op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using Env = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       const at::Tensor&, double, double);

class EnvFn : public torch::autograd::Function<EnvFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& avg, const at::Tensor& std,
                            double rcut_smth, double rcut) {
    ctx->save_for_backward({coord, nlist, atype, std});
    ctx->saved_data["rs"] = rcut_smth;
    ctx->saved_data["rc"] = rcut;
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<Env>("dpmd::env_mat");
    return f.call(coord, nlist, atype, avg, std, rcut_smth, rcut);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    static auto f = op<Env>("dpmd::env_mat_backward");
    at::Tensor gc = f.call(v[0], v[1], v[2], v[3], grads[0], ctx->saved_data["rs"].toDouble(),
                           ctx->saved_data["rc"].toDouble());
    return {gc, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class EnvBwFn : public torch::autograd::Function<EnvBwFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& std, const at::Tensor& grad,
                            double rcut_smth, double rcut) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<Env>("dpmd::env_mat_backward");
    return f.call(coord, nlist, atype, std, grad, rcut_smth, rcut);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, "dpmd::env_mat: second derivatives are not implemented (a compressed model is for ",
                "inference: forces and virials; train the uncompressed model)");
  }
};

using SeA = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                       bool);
using SeABw = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                         double, bool, const at::Tensor&);

class SeAFn : public torch::autograd::Function<SeAFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& coef, const at::Tensor& grid,
                            const at::Tensor& net, const at::Tensor& coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& avg, const at::Tensor& std, double rcut_smth,
                            double rcut, bool skip_empty) {
    ctx->save_for_backward({coef, grid, net, coord, nlist, atype, avg, std});
    ctx->saved_data["rs"] = rcut_smth;
    ctx->saved_data["rc"] = rcut;
    ctx->saved_data["skip"] = skip_empty;
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<SeA>("dpmd::se_a_tab");
    return f.call(coef, grid, net, coord, nlist, atype, avg, std, rcut_smth, rcut, skip_empty);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    static auto f = op<SeABw>("dpmd::se_a_tab_backward");
    at::Tensor gc = f.call(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], ctx->saved_data["rs"].toDouble(),
                           ctx->saved_data["rc"].toDouble(), ctx->saved_data["skip"].toBool(), grads[0]);
    torch::autograd::variable_list out(11);
    out[3] = gc;
    return out;
  }
};

class SeABwFn : public torch::autograd::Function<SeABwFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& coef, const at::Tensor& grid,
                            const at::Tensor& net, const at::Tensor& coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& avg, const at::Tensor& std, double rcut_smth,
                            double rcut, bool skip_empty, const at::Tensor& grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto f = op<SeABw>("dpmd::se_a_tab_backward");
    return f.call(coef, grid, net, coord, nlist, atype, avg, std, rcut_smth, rcut, skip_empty, grad);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, "dpmd::se_a_tab: second derivatives are not implemented (a compressed model is for ",
                "inference: forces and virials; train the uncompressed model)");
  }
};

at::Tensor se_a_autograd(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net,
                         const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype,
                         const at::Tensor& avg, const at::Tensor& std, double rcut_smth, double rcut,
                         bool skip_empty) {
  return SeAFn::apply(coef, grid, net, coord, nlist, atype, avg, std, rcut_smth, rcut, skip_empty);
}

at::Tensor se_a_bw_autograd(const at::Tensor& coef, const at::Tensor& grid, const at::Tensor& net,
                            const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& avg, const at::Tensor& std, double rcut_smth, double rcut,
                            bool skip_empty, const at::Tensor& grad) {
  return SeABwFn::apply(coef, grid, net, coord, nlist, atype, avg, std, rcut_smth, rcut, skip_empty, grad);
}

at::Tensor env_autograd(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype,
                        const at::Tensor& avg, const at::Tensor& std, double rcut_smth, double rcut) {
  return EnvFn::apply(coord, nlist, atype, avg, std, rcut_smth, rcut);
}

at::Tensor env_bw_autograd(const at::Tensor& coord, const at::Tensor& nlist, const at::Tensor& atype,
                           const at::Tensor& std, const at::Tensor& grad, double rcut_smth, double rcut) {
  return EnvBwFn::apply(coord, nlist, atype, std, grad, rcut_smth, rcut);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dpmd, m) {
  m.def("env_mat(Tensor coord, Tensor nlist, Tensor atype, Tensor avg, Tensor std, float rcut_smth, "
        "float rcut) -> Tensor");
  m.def("env_mat_backward(Tensor coord, Tensor nlist, Tensor atype, Tensor std, Tensor grad, "
        "float rcut_smth, float rcut) -> Tensor");
  m.def("se_a_tab(Tensor coef, Tensor grid, Tensor net, Tensor coord, Tensor nlist, Tensor atype, Tensor avg, "
        "Tensor std, float rcut_smth, float rcut, bool skip_empty) -> Tensor");
  m.def("se_a_tab_backward(Tensor coef, Tensor grid, Tensor net, Tensor coord, Tensor nlist, Tensor atype, "
        "Tensor avg, Tensor std, float rcut_smth, float rcut, bool skip_empty, Tensor grad) -> Tensor");
}

TORCH_LIBRARY_IMPL(dpmd, CPU, m) {
  m.impl("env_mat", TORCH_FN(env_cpu));
  m.impl("env_mat_backward", TORCH_FN(env_bw_cpu));
  m.impl("se_a_tab", TORCH_FN(se_a_cpu));
  m.impl("se_a_tab_backward", TORCH_FN(se_a_bw_cpu));
}

TORCH_LIBRARY_IMPL(dpmd, Meta, m) {
  m.impl("env_mat", TORCH_FN(env_meta));
  m.impl("env_mat_backward", TORCH_FN(env_bw_meta));
  m.impl("se_a_tab", TORCH_FN(se_a_meta));
  m.impl("se_a_tab_backward", TORCH_FN(se_a_bw_meta));
}

TORCH_LIBRARY_IMPL(dpmd, Autograd, m) {
  m.impl("env_mat", TORCH_FN(env_autograd));
  m.impl("env_mat_backward", TORCH_FN(env_bw_autograd));
  m.impl("se_a_tab", TORCH_FN(se_a_autograd));
  m.impl("se_a_tab_backward", TORCH_FN(se_a_bw_autograd));
}
