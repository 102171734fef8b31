// DpmdSeATab, the TensorFlow form of dpmd::se_a_tab (core/backends/torch/env_mat_op.cc): the
// compressed se_e2_a block in one op (kernels/env_mat.h), on TensorFlow's C op/kernel API:
//
//   DpmdSeATab(coef [L, 6, M] T, grid [8] f64, net [*] f64, coord [nf, nall, 3] T,
//              nlist [nf, nloc, nnei] i64, atype [nf, >= nloc] i64, avg [nt, 4] T, std [nt, 4] T,
//              params [3] f64 = (rcut_smth, rcut, skip_empty)) -> [nf, nloc, M, 4] T
//   DpmdSeATabGrad(the same inputs, dy [nf, nloc, M, 4]) -> dcoord [nf, nall, 3]
//
// The cutoffs travel as a float64 input, not attributes (TF attributes are float32: the
// switch would move by a rounding). Python (deepmd_md/kernels/env_mat.py) registers the Grad
// op as the gradient (first order) and a gradient of it that raises. Built into
// libdpmd_tf_ops.so beside DpmdTabulate*.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "env_mat.h"
#include "tabulate.h"
#include "tf_op.h"

namespace {

namespace K = dpmd::kernels;

struct Call {
  In coef, grid, net, coord, nlist, atype, avg, std, params, dy;
  K::Net knet;
  K::Grid kgrid;
  int64_t nf, nall, nloc, nnei, nat;
  K::EnvMatParams p;
  bool skip_empty;
};

// inputs read and checked; false: the call failed (message set)
bool read(TF_OpKernelContext* ctx, const char* op, Call& c, bool grad) {
  if (!get(ctx, 0, c.coef) || !get(ctx, 1, c.grid) || !get(ctx, 2, c.net) || !get(ctx, 3, c.coord) ||
      !get(ctx, 4, c.nlist) || !get(ctx, 5, c.atype) || !get(ctx, 6, c.avg) || !get(ctx, 7, c.std) ||
      !get(ctx, 8, c.params) || (grad && !get(ctx, 9, c.dy)))
    return false;
  const std::string o(op);
  const TF_DataType dt = TF_TensorType(c.coord.t);
  for (const In* x : {&c.coef, &c.avg, &c.std})
    if (TF_TensorType(x->t) != dt) return fail(ctx, o + ": coef, avg, std and coord dtypes differ"), false;
  if (grad && TF_TensorType(c.dy.t) != dt) return fail(ctx, o + ": dy and coord dtypes differ"), false;
  if (TF_TensorType(c.grid.t) != TF_DOUBLE || TF_TensorType(c.net.t) != TF_DOUBLE ||
      TF_TensorType(c.params.t) != TF_DOUBLE || c.params.size() != 3)
    return fail(ctx, o + ": grid, net and params [3] must be float64"), false;
  if (TF_TensorType(c.nlist.t) != TF_INT64 || TF_TensorType(c.atype.t) != TF_INT64)
    return fail(ctx, o + ": nlist and atype must be int64"), false;
  if (c.coord.rank() != 3 || c.coord.dim(2) != 3 || c.nlist.rank() != 3 || c.nlist.dim(0) != c.coord.dim(0) ||
      c.atype.rank() != 2 || c.atype.dim(0) != c.coord.dim(0) || c.atype.dim(1) < c.nlist.dim(1) ||
      c.nlist.dim(1) > c.coord.dim(1) || c.avg.rank() != 2 || c.avg.dim(1) != 4 || c.std.rank() != 2 ||
      c.std.dim(1) != 4 || c.std.dim(0) != c.avg.dim(0))
    return fail(ctx, o + ": coord [nf, nall, 3], nlist [nf, nloc, nnei], atype [nf, >= nloc], avg and std "
                         "[ntypes, 4] expected"), false;
  try {
    c.kgrid = K::parse_grid(c.grid.data<double>(), c.grid.size());
    c.knet = K::parse_net(c.net.data<double>(), c.net.size());
  } catch (const std::exception& e) {
    return fail(ctx, o + ": " + e.what()), false;
  }
  if (c.coef.rank() != 3 || c.coef.dim(1) != 6 || c.coef.dim(0) != c.kgrid.n1 + c.kgrid.n2 ||
      c.coef.dim(2) != c.knet.nout())
    return fail(ctx, o + ": coef [n1 + n2, 6, M] does not match its grid and net"), false;
  c.nf = c.coord.dim(0), c.nall = c.coord.dim(1), c.nloc = c.nlist.dim(1), c.nnei = c.nlist.dim(2);
  c.nat = c.atype.dim(1);
  const int64_t bad = K::env_mat_bad_index(c.nlist.data<int64_t>(), c.nlist.size(), c.nall);
  if (bad != -2) return fail(ctx, o + ": neighbor index " + std::to_string(bad) + " outside the coordinates"), false;
  const int64_t* t = c.atype.data<int64_t>();
  for (int64_t f = 0; f < c.nf; ++f)
    for (int64_t i = 0; i < c.nloc; ++i)
      if (t[f * c.nat + i] < 0 || t[f * c.nat + i] >= c.avg.dim(0))
        return fail(ctx, o + ": center type outside [0, ntypes)"), false;
  const double* pr = c.params.data<double>();
  c.p = K::EnvMatParams{pr[0], pr[1], 4};
  c.skip_empty = pr[2] != 0.0;
  if (grad && (c.dy.rank() != 4 || c.dy.dim(0) != c.nf || c.dy.dim(1) != c.nloc || c.dy.dim(2) != c.knet.nout() ||
               c.dy.dim(3) != 4))
    return fail(ctx, o + ": dy [nf, nloc, M, 4] expected"), false;
  return true;
}

template <typename T>
void se_a(TF_OpKernelContext* ctx) {
  Call c;
  if (!read(ctx, "DpmdSeATab", c, false)) return;
  const int64_t m = c.knet.nout();
  In out;
  if (!alloc<T>(ctx, 0, TF_TensorType(c.coord.t), {c.nf, c.nloc, m, 4}, out)) return;
  std::vector<T> rows(size_t(c.nloc * c.nnei) * 4), s(size_t(c.nloc * c.nnei));
  const K::Table<T> t{c.coef.data<T>(), m, c.kgrid, &c.knet};
  for (int64_t f = 0; f < c.nf; ++f)
    K::se_a_block_forward<T>(c.p, t, c.coord.data<T>() + f * c.nall * 3, c.nlist.data<int64_t>() + f * c.nloc * c.nnei,
                             c.atype.data<int64_t>() + f * c.nat, c.avg.data<T>(), c.std.data<T>(), c.nnei,
                             c.skip_empty, 0, c.nloc, rows.data(), s.data(), out.data<T>() + f * c.nloc * m * 4,
                             K::overflow_counter(c.kgrid));
  K::overflow_report(c.kgrid);
}

template <typename T>
void se_a_grad(TF_OpKernelContext* ctx) {
  Call c;
  if (!read(ctx, "DpmdSeATabGrad", c, true)) return;
  const int64_t m = c.knet.nout();
  In out;
  if (!alloc<T>(ctx, 0, TF_TensorType(c.coord.t), {c.nf, c.nall, 3}, out)) return;
  T* g = out.data<T>();
  std::fill(g, g + c.nf * c.nall * 3, T(0));
  const size_t np = size_t(c.nloc * c.nnei);
  std::vector<T> rows(4 * np), grows(4 * np), s(np), ds(np);
  const K::Table<T> t{c.coef.data<T>(), m, c.kgrid, &c.knet};
  for (int64_t f = 0; f < c.nf; ++f)
    K::se_a_block_backward<T>(c.p, t, c.coord.data<T>() + f * c.nall * 3,
                              c.nlist.data<int64_t>() + f * c.nloc * c.nnei, c.atype.data<int64_t>() + f * c.nat,
                              c.avg.data<T>(), c.std.data<T>(), c.nloc, c.nnei, c.skip_empty,
                              c.dy.data<T>() + f * c.nloc * m * 4, rows.data(), grows.data(), s.data(), ds.data(),
                              g + f * c.nall * 3);
}

template <void (*F32)(TF_OpKernelContext*), void (*F64)(TF_OpKernelContext*)>
void compute(void*, TF_OpKernelContext* ctx) {
  const TF_DataType dt = TF_InputDatatype(ctx, 3);
  if (dt == TF_DOUBLE) return F64(ctx);
  if (dt == TF_FLOAT) return F32(ctx);
  fail(ctx, "DpmdSeATab: float32 or float64 expected");
}

void se_a_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // [nf, nloc, M, 4]
  Shapes sh{ctx, st, {}};
  TF_ShapeHandle* nl = sh.ranked(4, 3);
  TF_ShapeHandle* m = sh.sub(sh.ranked(0, 3), 2, 3);
  TF_ShapeHandle* four = sh.sub(sh.ranked(6, 2), 1, 2);
  if (!sh.ok()) return;
  TF_ShapeHandle* a = sh.cat(sh.sub(nl, 0, 2), m);
  if (sh.ok()) sh.out(0, sh.cat(a, four));
}

void se_a_grad_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // like coord
  Shapes sh{ctx, st, {}};
  sh.out(0, sh.input(3));
}

const bool registered = [] {
  std::vector<const char*> in = {"coef: T",      "grid: float64", "net: float64", "coord: T", "nlist: int64",
                                 "atype: int64", "avg: T",        "std: T",       "params: float64"};
  register_op("DpmdSeATab", in, {"y: T"}, se_a_shape, compute<se_a<float>, se_a<double>>);
  in.push_back("dy: T");
  register_op("DpmdSeATabGrad", in, {"y: T"}, se_a_grad_shape, compute<se_a_grad<float>, se_a_grad<double>>);
  return true;
}();

}  // namespace
