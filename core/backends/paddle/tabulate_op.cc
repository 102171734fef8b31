// dpmd_tabulate / dpmd_tabulate_fusion, the Paddle form of dpmd::tabulate* (compressed models,
// tabulated embedding nets: kernels/tabulate.h), as Paddle custom operators:
//
//   dpmd_tabulate(coef, grid, net, s [*]) -> G [*, M]                  (se_atten strip, DPA-2)
//   dpmd_tabulate_fusion(coef, grid, net, s [B, J], em [B, J, C]) -> [B, M, C]
//       = sum_j G(s_bj)^T em_bj                                        (se_e2_a, se_e2_r)
//
// coef [n1 + n2, 6, M] (model dtype), grid [8] f64, net flat f64 (layouts in kernels/tabulate.h).
// Grad ops give ds (and dem): first order, what forces and virials need; coef, grid and net get
// no gradient. Single-threaded: the core runs chunks of atoms on its own threads, one Paddle
// predictor each. Overflow check (grid[7] = check_frequency > 0): every that many forward
// calls, pairs seen beyond the training-data table since the last report go to stderr.
//
// Built into libdpmd_paddle_ops.so with dpmd_ghost_exchange.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "paddle/extension.h"
#include "tabulate.h"

namespace {

namespace K = dpmd::kernels;

struct Parsed {
  K::Net net;
  K::Grid grid;
};

Parsed parse(const paddle::Tensor& grid, const paddle::Tensor& net) {
  PD_CHECK(grid.dtype() == paddle::DataType::FLOAT64 && net.dtype() == paddle::DataType::FLOAT64,
           "dpmd_tabulate: grid and net must be float64");
  Parsed p;
  try {
    p.grid = K::parse_grid(grid.data<double>(), grid.numel());
    p.net = K::parse_net(net.data<double>(), net.numel());
  } catch (const std::exception& e) {
    PD_THROW("dpmd_tabulate: ", e.what());
  }
  return p;
}

template <typename T>
K::Table<T> table_of(const paddle::Tensor& coef, const Parsed& p) {
  const auto& c = coef.shape();
  PD_CHECK(c.size() == 3 && c[1] == 6 && c[0] == p.grid.n1 + p.grid.n2 && c[2] == p.net.nout(),
           "dpmd_tabulate: coef [n1 + n2, 6, M] does not match its grid and net");
  return K::Table<T>{coef.data<T>(), c[2], p.grid, &p.net};
}

bool is_f64(const paddle::Tensor& t) {
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT64 || t.dtype() == paddle::DataType::FLOAT32,
           "dpmd_tabulate: float32 or float64 expected");
  return t.dtype() == paddle::DataType::FLOAT64;
}

void same_dtype(const paddle::Tensor& coef, const paddle::Tensor& a) {
  PD_CHECK(a.dtype() == coef.dtype(), "dpmd_tabulate: coef and its inputs have different dtypes");
}

// -- dpmd_tabulate ---------------------------------------------------------------------------------
template <typename T>
void tab_fw(const paddle::Tensor& coef, const Parsed& p, const paddle::Tensor& s, paddle::Tensor& out) {
  K::tabulate_forward<T>(table_of<T>(coef, p), s.data<T>(), 0, s.numel(), out.data<T>(), K::overflow_counter(p.grid));
}

std::vector<paddle::Tensor> tabulate(const paddle::Tensor& coef, const paddle::Tensor& grid,
                                     const paddle::Tensor& net, const paddle::Tensor& s) {
  same_dtype(coef, s);
  Parsed p = parse(grid, net);
  std::vector<int64_t> shape = s.shape();
  shape.push_back(coef.shape()[2]);
  paddle::Tensor out = paddle::empty(shape, s.dtype(), paddle::CPUPlace());
  if (is_f64(s)) tab_fw<double>(coef, p, s, out); else tab_fw<float>(coef, p, s, out);
  K::overflow_report(p.grid);
  return {out};
}

template <typename T>
void tab_bw(const paddle::Tensor& coef, const Parsed& p, const paddle::Tensor& s, const paddle::Tensor& dg,
            paddle::Tensor& ds) {
  K::tabulate_backward<T>(table_of<T>(coef, p), s.data<T>(), dg.data<T>(), 0, s.numel(), ds.data<T>());
}

std::vector<paddle::Tensor> tabulate_grad(const paddle::Tensor& coef, const paddle::Tensor& grid,
                                          const paddle::Tensor& net, const paddle::Tensor& s,
                                          const paddle::Tensor& dout) {
  same_dtype(coef, dout);
  Parsed p = parse(grid, net);
  paddle::Tensor ds = paddle::empty(s.shape(), s.dtype(), paddle::CPUPlace());
  if (is_f64(s)) tab_bw<double>(coef, p, s, dout, ds); else tab_bw<float>(coef, p, s, dout, ds);
  return {ds};
}

std::vector<std::vector<int64_t>> tabulate_shape(const std::vector<int64_t>& coef, const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&, const std::vector<int64_t>& s) {
  std::vector<int64_t> out = s;
  out.push_back(coef[2]);
  return {out};
}

std::vector<paddle::DataType> tabulate_dtype(const paddle::DataType&, const paddle::DataType&,
                                             const paddle::DataType&, const paddle::DataType& s) {
  return {s};
}

// -- dpmd_tabulate_fusion --------------------------------------------------------------------------
void check_fusion(const paddle::Tensor& coef, const paddle::Tensor& s, const paddle::Tensor& em) {
  PD_CHECK(s.shape().size() == 2 && em.shape().size() == 3 && em.shape()[0] == s.shape()[0] &&
               em.shape()[1] == s.shape()[1],
           "dpmd_tabulate_fusion: s [B, J] and em [B, J, C] expected");
  same_dtype(coef, s);
  same_dtype(coef, em);
}

template <typename T>
void fus_fw(const paddle::Tensor& coef, const Parsed& p, const paddle::Tensor& s, const paddle::Tensor& em,
            paddle::Tensor& out) {
  const int64_t nb = s.shape()[0], nj = s.shape()[1], nc = em.shape()[2];
  K::fusion_forward<T>(table_of<T>(coef, p), s.data<T>(), em.data<T>(), nj, nc, 0, nb, out.data<T>(),
                       K::overflow_counter(p.grid));
}

std::vector<paddle::Tensor> fusion(const paddle::Tensor& coef, const paddle::Tensor& grid,
                                   const paddle::Tensor& net, const paddle::Tensor& s, const paddle::Tensor& em) {
  check_fusion(coef, s, em);
  Parsed p = parse(grid, net);
  paddle::Tensor out =
      paddle::empty({s.shape()[0], coef.shape()[2], em.shape()[2]}, em.dtype(), paddle::CPUPlace());
  if (is_f64(s)) fus_fw<double>(coef, p, s, em, out); else fus_fw<float>(coef, p, s, em, out);
  K::overflow_report(p.grid);
  return {out};
}

template <typename T>
void fus_bw(const paddle::Tensor& coef, const Parsed& p, const paddle::Tensor& s, const paddle::Tensor& em,
            const paddle::Tensor& dout, paddle::Tensor& ds, paddle::Tensor& dem) {
  const int64_t nb = s.shape()[0], nj = s.shape()[1], nc = em.shape()[2];
  K::fusion_backward<T>(table_of<T>(coef, p), s.data<T>(), em.data<T>(), dout.data<T>(), nj, nc, 0, nb,
                        ds.data<T>(), dem.data<T>());
}

std::vector<paddle::Tensor> fusion_grad(const paddle::Tensor& coef, const paddle::Tensor& grid,
                                        const paddle::Tensor& net, const paddle::Tensor& s,
                                        const paddle::Tensor& em, const paddle::Tensor& dout) {
  check_fusion(coef, s, em);
  same_dtype(coef, dout);
  Parsed p = parse(grid, net);
  paddle::Tensor ds = paddle::empty(s.shape(), s.dtype(), paddle::CPUPlace());
  paddle::Tensor dem = paddle::empty(em.shape(), em.dtype(), paddle::CPUPlace());
  if (is_f64(s)) fus_bw<double>(coef, p, s, em, dout, ds, dem); else fus_bw<float>(coef, p, s, em, dout, ds, dem);
  return {ds, dem};
}

std::vector<std::vector<int64_t>> fusion_shape(const std::vector<int64_t>& coef, const std::vector<int64_t>&,
                                               const std::vector<int64_t>&, const std::vector<int64_t>& s,
                                               const std::vector<int64_t>& em) {
  return {{s[0], coef[2], em[2]}};
}

std::vector<paddle::DataType> fusion_dtype(const paddle::DataType&, const paddle::DataType&,
                                           const paddle::DataType&, const paddle::DataType&,
                                           const paddle::DataType& em) {
  return {em};
}

}  // namespace

PD_BUILD_OP(dpmd_tabulate)
    .Inputs({"coef", "grid", "net", "s"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(tabulate))
    .SetInferShapeFn(PD_INFER_SHAPE(tabulate_shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(tabulate_dtype));

PD_BUILD_GRAD_OP(dpmd_tabulate)
    .Inputs({"coef", "grid", "net", "s", paddle::Grad("out")})
    .Outputs({paddle::Grad("s")})
    .SetKernelFn(PD_KERNEL(tabulate_grad));

PD_BUILD_OP(dpmd_tabulate_fusion)
    .Inputs({"coef", "grid", "net", "s", "em"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(fusion))
    .SetInferShapeFn(PD_INFER_SHAPE(fusion_shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(fusion_dtype));

PD_BUILD_GRAD_OP(dpmd_tabulate_fusion)
    .Inputs({"coef", "grid", "net", "s", "em", paddle::Grad("out")})
    .Outputs({paddle::Grad("s"), paddle::Grad("em")})
    .SetKernelFn(PD_KERNEL(fusion_grad));
