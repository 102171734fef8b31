// DpmdTabulate*, the TensorFlow form of the ops of compressed models (kernels/tabulate.h; the
// PyTorch form is core/backends/torch/tabulate_op.cc), on TensorFlow's C op/kernel API:
//
//   DpmdTabulate(coef [L, 6, M] T, grid [8] f64, net [*] f64, s [*] T) -> G [*, M] T
//   DpmdTabulateGrad(coef, grid, net, s, dG [*, M]) -> ds [*]
//   DpmdTabulateFusion(coef, grid, net, s [B, J] T, em [B, J, C] T) -> [B, M, C] = sum_j G(s_bj)^T em_bj
//   DpmdTabulateFusionGrad(coef, grid, net, s, em, dout [B, M, C]) -> (ds [B, J], dem [B, J, C])
//
// T float or double (coef, s and em alike). Python (deepmd_md/backends/tensorflow/ops.py)
// registers the *Grad ops as the forward ops' gradients (first order: forces and virials), and
// a gradient of the *Grad ops that raises: a second derivative is an error, never zeros. coef,
// grid and net get no gradient. One thread per op call (the engines run one intra-op thread per
// MPI rank); overflow report every grid[7] forward calls as the PyTorch ops. Built into
// libdpmd_tf_ops.so beside DpmdGhostExchange.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <string>
#include <vector>

#include "tabulate.h"
#include "tf_op.h"

namespace {

namespace K = dpmd::kernels;

struct Parsed {
  K::Net net;
  K::Grid grid;
};

// grid and net parsed (they point into the input tensors, alive for the call), coef checked
bool parse(TF_OpKernelContext* ctx, const char* op, const In& coef, const In& grid, const In& net, Parsed& p) {
  if (TF_TensorType(grid.t) != TF_DOUBLE || TF_TensorType(net.t) != TF_DOUBLE) {
    fail(ctx, std::string(op) + ": grid and net must be float64");
    return false;
  }
  try {
    p.grid = K::parse_grid(grid.data<double>(), grid.size());
    p.net = K::parse_net(net.data<double>(), net.size());
  } catch (const std::exception& e) {
    fail(ctx, std::string(op) + ": " + e.what());
    return false;
  }
  if (coef.rank() != 3 || coef.dim(1) != 6 || coef.dim(0) != p.grid.n1 + p.grid.n2 || coef.dim(2) != p.net.nout()) {
    fail(ctx, std::string(op) + ": coef [n1 + n2, 6, M] does not match its grid and net");
    return false;
  }
  return true;
}

template <typename T>
K::Table<T> table_of(const In& coef, const Parsed& p) {
  return K::Table<T>{coef.data<T>(), coef.dim(2), p.grid, &p.net};
}

bool same_type(TF_OpKernelContext* ctx, const char* op, std::initializer_list<const In*> xs) {
  for (const In* x : xs)
    if (TF_TensorType(x->t) != TF_TensorType(xs.begin()[0]->t)) {
      fail(ctx, std::string(op) + ": s, em, gradients and coef dtypes differ");
      return false;
    }
  return true;
}

template <typename T>
void tabulate(TF_OpKernelContext* ctx) {
  In coef, grid, net, s, out;
  if (!get(ctx, 0, coef) || !get(ctx, 1, grid) || !get(ctx, 2, net) || !get(ctx, 3, s)) return;
  Parsed p;
  if (!same_type(ctx, "DpmdTabulate", {&coef, &s}) || !parse(ctx, "DpmdTabulate", coef, grid, net, p)) return;
  std::vector<int64_t> dims;
  for (int d = 0; d < s.rank(); ++d) dims.push_back(s.dim(d));
  dims.push_back(coef.dim(2));
  if (!alloc<T>(ctx, 0, TF_TensorType(s.t), dims, out)) return;
  K::tabulate_forward<T>(table_of<T>(coef, p), s.data<T>(), 0, s.size(), out.data<T>(), K::overflow_counter(p.grid));
  K::overflow_report(p.grid);
}

template <typename T>
void tabulate_grad(TF_OpKernelContext* ctx) {
  In coef, grid, net, s, dg, ds;
  if (!get(ctx, 0, coef) || !get(ctx, 1, grid) || !get(ctx, 2, net) || !get(ctx, 3, s) || !get(ctx, 4, dg)) return;
  Parsed p;
  if (!same_type(ctx, "DpmdTabulateGrad", {&coef, &s, &dg}) || !parse(ctx, "DpmdTabulateGrad", coef, grid, net, p))
    return;
  if (dg.size() != s.size() * coef.dim(2)) return fail(ctx, "DpmdTabulateGrad: dG [*, M] does not match s [*]");
  std::vector<int64_t> dims;
  for (int d = 0; d < s.rank(); ++d) dims.push_back(s.dim(d));
  if (!alloc<T>(ctx, 0, TF_TensorType(s.t), dims, ds)) return;
  K::tabulate_backward<T>(table_of<T>(coef, p), s.data<T>(), dg.data<T>(), 0, s.size(), ds.data<T>());
}

bool fusion_shapes(TF_OpKernelContext* ctx, const char* op, const In& s, const In& em) {
  if (s.rank() != 2 || em.rank() != 3 || em.dim(0) != s.dim(0) || em.dim(1) != s.dim(1)) {
    fail(ctx, std::string(op) + ": s [B, J] and em [B, J, C] expected");
    return false;
  }
  return true;
}

template <typename T>
void fusion(TF_OpKernelContext* ctx) {
  In coef, grid, net, s, em, out;
  if (!get(ctx, 0, coef) || !get(ctx, 1, grid) || !get(ctx, 2, net) || !get(ctx, 3, s) || !get(ctx, 4, em)) return;
  Parsed p;
  const char* op = "DpmdTabulateFusion";
  if (!same_type(ctx, op, {&coef, &s, &em}) || !fusion_shapes(ctx, op, s, em) || !parse(ctx, op, coef, grid, net, p))
    return;
  const int64_t nb = s.dim(0), nj = s.dim(1), nc = em.dim(2);
  if (!alloc<T>(ctx, 0, TF_TensorType(s.t), {nb, coef.dim(2), nc}, out)) return;
  K::fusion_forward<T>(table_of<T>(coef, p), s.data<T>(), em.data<T>(), nj, nc, 0, nb, out.data<T>(), K::overflow_counter(p.grid));
  K::overflow_report(p.grid);
}

template <typename T>
void fusion_grad(TF_OpKernelContext* ctx) {
  In coef, grid, net, s, em, dout, ds, dem;
  if (!get(ctx, 0, coef) || !get(ctx, 1, grid) || !get(ctx, 2, net) || !get(ctx, 3, s) || !get(ctx, 4, em) ||
      !get(ctx, 5, dout))
    return;
  Parsed p;
  const char* op = "DpmdTabulateFusionGrad";
  if (!same_type(ctx, op, {&coef, &s, &em, &dout}) || !fusion_shapes(ctx, op, s, em) ||
      !parse(ctx, op, coef, grid, net, p))
    return;
  const int64_t nb = s.dim(0), nj = s.dim(1), nc = em.dim(2);
  if (dout.rank() != 3 || dout.dim(0) != nb || dout.dim(1) != coef.dim(2) || dout.dim(2) != nc)
    return fail(ctx, "DpmdTabulateFusionGrad: dout [B, M, C] does not match s and em");
  if (!alloc<T>(ctx, 0, TF_TensorType(s.t), {nb, nj}, ds) || !alloc<T>(ctx, 1, TF_TensorType(s.t), {nb, nj, nc}, dem))
    return;
  K::fusion_backward<T>(table_of<T>(coef, p), s.data<T>(), em.data<T>(), dout.data<T>(), nj, nc, 0, nb,
                        ds.data<T>(), dem.data<T>());
}

// the kernel on input 3's dtype (s): float or double
template <void (*F32)(TF_OpKernelContext*), void (*F64)(TF_OpKernelContext*)>
void compute(void*, TF_OpKernelContext* ctx) {
  const TF_DataType dt = TF_InputDatatype(ctx, 3);
  if (dt == TF_DOUBLE) return F64(ctx);
  if (dt == TF_FLOAT) return F32(ctx);
  fail(ctx, "DpmdTabulate: float32 or float64 expected");
}


// -- shape functions: static M (and known B, J, C) for the graph ---------------------------------
void tab_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // [*s, M]
  Shapes sh{ctx, st, {}};
  TF_ShapeHandle* m = sh.sub(sh.ranked(0, 3), 2, 3);
  if (sh.ok()) sh.out(0, sh.cat(sh.input(3), m));
}

void tab_grad_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // like s
  Shapes sh{ctx, st, {}};
  sh.out(0, sh.input(3));
}

void fusion_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // [B, M, C]
  Shapes sh{ctx, st, {}};
  TF_ShapeHandle* s = sh.ranked(3, 2);
  TF_ShapeHandle* em = sh.ranked(4, 3);
  TF_ShapeHandle* m = sh.sub(sh.ranked(0, 3), 2, 3);
  if (!sh.ok()) return;
  TF_ShapeHandle* bm = sh.cat(sh.sub(s, 0, 1), m);
  if (sh.ok()) sh.out(0, sh.cat(bm, sh.sub(em, 2, 3)));
}

void fusion_grad_shape(TF_ShapeInferenceContext* ctx, TF_Status* st) {  // like s, like em
  Shapes sh{ctx, st, {}};
  sh.out(0, sh.input(3));
  if (sh.ok()) sh.out(1, sh.input(4));
}

const bool registered = [] {
  register_op("DpmdTabulate", {"coef: T", "grid: float64", "net: float64", "s: T"}, {"y: T"}, tab_shape,
              compute<tabulate<float>, tabulate<double>>);
  register_op("DpmdTabulateGrad", {"coef: T", "grid: float64", "net: float64", "s: T", "dy: T"}, {"ds: T"},
              tab_grad_shape, compute<tabulate_grad<float>, tabulate_grad<double>>);
  register_op("DpmdTabulateFusion", {"coef: T", "grid: float64", "net: float64", "s: T", "em: T"}, {"y: T"},
              fusion_shape, compute<fusion<float>, fusion<double>>);
  register_op("DpmdTabulateFusionGrad", {"coef: T", "grid: float64", "net: float64", "s: T", "em: T", "dy: T"},
              {"ds: T", "dem: T"}, fusion_grad_shape, compute<fusion_grad<float>, fusion_grad<double>>);
  return true;
}();

}  // namespace
