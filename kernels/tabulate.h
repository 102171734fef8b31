// Tabulated embedding nets (model compression): no framework dependency.
//
// A 1-input embedding net N: s -> R^M is replaced by piecewise quintic polynomials. On each
// interval [x_l, x_l + h] with u = (s - x_l) / h in [0, 1):
//     G_m(s) = sum_k c[l][k][m] u^k,   k = 0..5,
// whose value, first and second derivative equal the net's at both knots (quintic Hermite), so
// G is C2 across knots. Two uniform tables, as DeePMD-kit's `dp compress`:
//     table 1: [lo, up)  stride h1 (the range of s in the training data)
//     table 2: [up, hi)  stride h2 = 10 h1 (up to extrapolate x up)
// and outside [lo, hi) the net itself (exact value and derivative, counted), never a clamp.
//
// Layouts (row-major, contiguous):
//   coef  [n1 + n2, 6, M]  in T (float or double); powers outer so loops over M vectorize
//   grid  [8] double       lo, up, hi, h1, h2, n1, n2, check_frequency
//   net   flat double      version 1, act, act_param, nlayers, (nin, nout, has_idt) per layer,
//                          then per layer w [nin, nout], b [nout], idt [nout] if has_idt
// Embedding layer rule (deepmd_md/model/nn.py): y = act(x w + b) * idt, plus x when
// nout == nin, plus [x, x] when nout == 2 nin.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace dpmd::kernels {

enum class Act : int {
  Linear = 0, Tanh = 1, Relu = 2, Relu6 = 3, Softplus = 4, Sigmoid = 5, Gelu = 6, Silu = 7,
  Silut = 8
};

struct Layer {
  int64_t nin = 0, nout = 0;
  const double* w = nullptr;  // [nin, nout]
  const double* b = nullptr;  // [nout]
  const double* idt = nullptr;  // [nout] or null
};

struct Net {
  Act act = Act::Tanh;
  double act_param = 0.0;  // silut threshold
  std::vector<Layer> layers;
  int64_t width = 1;  // widest layer (scratch size)
  int64_t nout() const { return layers.empty() ? 1 : layers.back().nout; }
};

// Parse a flat net (see layout above). Throws std::invalid_argument on a malformed buffer.
Net parse_net(const double* flat, int64_t n);

// Value, first and second derivative of every output at s (order 0, 1 or 2 filled).
// y, dy, d2y: [M] each (dy/d2y may be null when order < 1/2).
void net_jet(const Net& net, double s, int order, double* y, double* dy, double* d2y);

struct Grid {
  double lo, up, hi, h1, h2;
  int64_t n1, n2;
  int64_t check_frequency;
};

Grid parse_grid(const double* g, int64_t n);

// coef [n1 + n2, 6, M] of the net over the grid (jets at every knot, then quintic Hermite).
template <typename T>
void build_table(const Net& net, const Grid& grid, T* coef);

// Pairs outside the tables, per kernel call (summed over threads).
struct Overflow {
  std::atomic<int64_t> beyond_data{0};   // outside table 1 ([lo, up)): extrapolated
  std::atomic<int64_t> beyond_table{0};  // outside both tables: the net evaluated
};

// The counts of this library (each framework's op library links its own copy of this file):
// the counter to pass to the kernels (null when the grid checks nothing), and the report on
// stderr after every check_frequency calls with the neighbors counted since the last one.
Overflow* overflow_counter(const Grid& g);
void overflow_report(const Grid& g);

template <typename T>
struct Table {
  const T* coef;  // [n1 + n2, 6, M]
  int64_t m;
  Grid grid;
  const Net* net;
};

// G(s) [N, M] for s [N], rows [n0, n1) of the output.
template <typename T>
void tabulate_forward(const Table<T>& t, const T* s, int64_t n0, int64_t n1, T* out,
                      Overflow* of);

// ds [N] = sum_m G'_m(s) dG[:, m]
template <typename T>
void tabulate_backward(const Table<T>& t, const T* s, const T* dg, int64_t n0, int64_t n1,
                       T* ds);

// Fused "tabulate + contract": out[b, m, c] = sum_j G_m(s[b, j]) em[b, j, c], for b in
// [b0, b1); s [B, J], em [B, J, C], out [B, M, C].
template <typename T>
void fusion_forward(const Table<T>& t, const T* s, const T* em, int64_t nj, int64_t nc,
                    int64_t b0, int64_t b1, T* out, Overflow* of);

// Its backward: dem[b, j, c] = sum_m G_m(s_bj) dout[b, m, c];
//               ds[b, j] = sum_m G'_m(s_bj) sum_c dout[b, m, c] em[b, j, c].
template <typename T>
void fusion_backward(const Table<T>& t, const T* s, const T* em, const T* dout, int64_t nj,
                     int64_t nc, int64_t b0, int64_t b1, T* ds, T* dem);

}  // namespace dpmd::kernels
