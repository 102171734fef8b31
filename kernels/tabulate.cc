// Tabulated embedding nets: jets of the net, quintic Hermite tables, table lookup and the fused
// "tabulate + contract with the env matrix" kernel with its backward (see tabulate.h).
#include "tabulate.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <cmath>
#include <stdexcept>
#include <string>

// The hot loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time
// (GCC >= 12 function multi-versioning); elsewhere one portable build.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DPMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DPMD_CLONES
#endif
#define DPMD_RESTRICT __restrict__

namespace dpmd::kernels {

namespace {

// f(z), f'(z), f''(z) of an activation
void act_jet(Act a, double p, double z, double& f, double& f1, double& f2) {
  switch (a) {
    case Act::Linear: f = z; f1 = 1; f2 = 0; return;
    case Act::Tanh: {
      const double t = std::tanh(z);
      f = t; f1 = 1 - t * t; f2 = -2 * t * f1; return;
    }
    case Act::Relu:
      if (z > 0) { f = z; f1 = 1; } else { f = 0; f1 = 0; }
      f2 = 0; return;
    case Act::Relu6:
      if (z <= 0) { f = 0; f1 = 0; } else if (z >= 6) { f = 6; f1 = 0; } else { f = z; f1 = 1; }
      f2 = 0; return;
    case Act::Softplus: {
      const double sg = 1 / (1 + std::exp(-z));
      f = std::log1p(std::exp(-std::fabs(z))) + std::max(z, 0.0); f1 = sg; f2 = sg * (1 - sg); return;
    }
    case Act::Sigmoid: {
      const double sg = 1 / (1 + std::exp(-z));
      f = sg; f1 = sg * (1 - sg); f2 = f1 * (1 - 2 * sg); return;
    }
    case Act::Gelu: {  // tanh approximation: 0.5 z (1 + tanh(k (z + c z^3)))
      const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
      const double g = k * (z + c * z * z * z), g1 = k * (1 + 3 * c * z * z), g2 = 6 * k * c * z;
      const double t = std::tanh(g), dt = 1 - t * t;
      f = 0.5 * z * (1 + t);
      f1 = 0.5 * (1 + t) + 0.5 * z * dt * g1;
      f2 = dt * g1 + 0.5 * z * dt * (g2 - 2 * t * g1 * g1);
      return;
    }
    case Act::Silu: {
      const double sg = 0.5 * (1 + std::tanh(0.5 * z)), ds = sg * (1 - sg);
      f = z * sg; f1 = sg + z * ds; f2 = 2 * ds + z * ds * (1 - 2 * sg); return;
    }
    case Act::Silut: {
      if (z < p) { act_jet(Act::Silu, 0, z, f, f1, f2); return; }
      const double st = 1 / (1 + std::exp(-p)), slope = st + p * st * (1 - st);
      const double t = std::tanh(slope * (z - p));
      f = t + p * st; f1 = slope * (1 - t * t); f2 = -2 * slope * slope * t * (1 - t * t); return;
    }
  }
  throw std::invalid_argument("unknown activation code");
}

// interval l and local coordinate u in [0, 1] of s; false outside [lo, hi) (or NaN)
template <typename T>
inline bool locate(const Grid& g, T s, int64_t& l, T& u) {
  if (!(s >= T(g.lo)) || !(s < T(g.hi))) return false;
  if (s < T(g.up)) {
    const T x = (s - T(g.lo)) / T(g.h1);
    l = std::min(int64_t(x), g.n1 - 1);
    u = x - T(l);
  } else {
    const T x = (s - T(g.up)) / T(g.h2);
    const int64_t k = std::min(int64_t(x), g.n2 - 1);
    l = g.n1 + k;
    u = x - T(k);
  }
  return true;
}

inline double stride(const Grid& g, int64_t l) { return l < g.n1 ? g.h1 : g.h2; }

// G [M] (and dG/ds [M] when dg) at s; counts overflow. coef [L][6][M]: each power's M
// coefficients contiguous, so the loops over outputs vectorize.
template <typename T>
__attribute__((always_inline)) inline void eval_one(const Table<T>& t, T s, T* DPMD_RESTRICT g, T* DPMD_RESTRICT dg,
                     std::vector<double>& scratch, int64_t& beyond_data, int64_t& beyond_table) {
  int64_t l;
  T u;
  const int64_t m = t.m;
  if (locate(t.grid, s, l, u)) {
    if (l >= t.grid.n1) ++beyond_data;
    const T* DPMD_RESTRICT c0 = t.coef + l * m * 6;
    const T *c1 = c0 + m, *c2 = c1 + m, *c3 = c2 + m, *c4 = c3 + m, *c5 = c4 + m;
    for (int64_t k = 0; k < m; ++k)
      g[k] = c0[k] + u * (c1[k] + u * (c2[k] + u * (c3[k] + u * (c4[k] + u * c5[k]))));
    if (dg) {
      const T ih = T(1.0 / stride(t.grid, l));
      for (int64_t k = 0; k < m; ++k)
        dg[k] = (c1[k] + u * (T(2) * c2[k] + u * (T(3) * c3[k] + u * (T(4) * c4[k] + u * T(5) * c5[k])))) * ih;
    }
    return;
  }
  ++beyond_data;
  ++beyond_table;
  scratch.resize(2 * m);
  net_jet(*t.net, double(s), dg ? 1 : 0, scratch.data(), scratch.data() + m, nullptr);
  for (int64_t k = 0; k < m; ++k) {
    g[k] = T(scratch[k]);
    if (dg) dg[k] = T(scratch[m + k]);
  }
}

void count(Overflow* of, int64_t a, int64_t b) {
  if (!of) return;
  if (a) of->beyond_data += a;
  if (b) of->beyond_table += b;
}

}  // namespace

Net parse_net(const double* flat, int64_t n) {
  auto bad = [](const std::string& why) { return std::invalid_argument("tabulated net: " + why); };
  if (n < 4 || flat[0] != 1.0) throw bad("not a version-1 flat net");
  Net net;
  const int code = int(flat[1]);
  if (code < 0 || code > 8) throw bad("unknown activation code " + std::to_string(code));
  net.act = Act(code);
  net.act_param = flat[2];
  const int64_t nl = int64_t(flat[3]);
  if (nl < 1 || 4 + 3 * nl > n) throw bad("bad layer count");
  int64_t off = 4 + 3 * nl, prev = 1;
  for (int64_t i = 0; i < nl; ++i) {
    Layer L;
    L.nin = int64_t(flat[4 + 3 * i]);
    L.nout = int64_t(flat[5 + 3 * i]);
    const bool idt = flat[6 + 3 * i] != 0;
    if (L.nin != prev || L.nout < 1) throw bad("layer " + std::to_string(i) + " sizes do not chain");
    const int64_t need = L.nin * L.nout + L.nout * (idt ? 2 : 1);
    if (off + need > n) throw bad("buffer too short");
    L.w = flat + off;
    off += L.nin * L.nout;
    L.b = flat + off;
    off += L.nout;
    if (idt) {
      L.idt = flat + off;
      off += L.nout;
    }
    net.width = std::max(net.width, L.nout);
    prev = L.nout;
    net.layers.push_back(L);
  }
  if (off != n) throw bad("trailing values");
  return net;
}

void net_jet(const Net& net, double s, int order, double* y, double* dy, double* d2y) {
  const int64_t w = net.width;
  std::vector<double> buf(6 * w, 0.0);
  double *x = buf.data(), *x1 = x + w, *x2 = x1 + w, *z = x2 + w, *z1 = z + w, *z2 = z1 + w;
  x[0] = s;
  x1[0] = 1;
  x2[0] = 0;
  for (const Layer& L : net.layers) {
    for (int64_t o = 0; o < L.nout; ++o) {
      double a = L.b[o], a1 = 0, a2 = 0;
      for (int64_t i = 0; i < L.nin; ++i) {
        const double wi = L.w[i * L.nout + o];
        a += wi * x[i];
        a1 += wi * x1[i];
        a2 += wi * x2[i];
      }
      double f, f1, f2;
      act_jet(net.act, net.act_param, a, f, f1, f2);
      double v = f, v1 = f1 * a1, v2 = f2 * a1 * a1 + f1 * a2;
      if (L.idt) {
        v *= L.idt[o];
        v1 *= L.idt[o];
        v2 *= L.idt[o];
      }
      if (L.nout == L.nin || L.nout == 2 * L.nin) {
        const int64_t i = o % L.nin;
        v += x[i];
        v1 += x1[i];
        v2 += x2[i];
      }
      z[o] = v;
      z1[o] = v1;
      z2[o] = v2;
    }
    std::copy(z, z + L.nout, x);
    std::copy(z1, z1 + L.nout, x1);
    std::copy(z2, z2 + L.nout, x2);
  }
  const int64_t m = net.nout();
  std::copy(x, x + m, y);
  if (order >= 1 && dy) std::copy(x1, x1 + m, dy);
  if (order >= 2 && d2y) std::copy(x2, x2 + m, d2y);
}

Grid parse_grid(const double* g, int64_t n) {
  if (n != 8) throw std::invalid_argument("tabulation grid: 8 values expected");
  Grid r{g[0], g[1], g[2], g[3], g[4], int64_t(g[5]), int64_t(g[6]), int64_t(g[7])};
  if (!(r.h1 > 0) || !(r.h2 > 0) || r.n1 < 1 || r.n2 < 0 || !(r.lo < r.up) || r.hi < r.up)
    throw std::invalid_argument("tabulation grid: bad range or stride");
  return r;
}

template <typename T>
void build_table(const Net& net, const Grid& grid, T* coef) {
  const int64_t m = net.nout(), nk = grid.n1 + grid.n2;
  std::vector<double> y(3 * m), yn(3 * m);
  // table 2 starts at `up` itself (lo + n1 h1 may differ from it by a rounding)
  auto knot = [&](int64_t l) { return l < grid.n1 ? grid.lo + double(l) * grid.h1
                                                  : grid.up + double(l - grid.n1) * grid.h2; };
  net_jet(net, knot(0), 2, y.data(), y.data() + m, y.data() + 2 * m);
  for (int64_t l = 0; l < nk; ++l) {
    const double x0 = knot(l), x1 = knot(l + 1), h = x1 - x0;
    net_jet(net, x1, 2, yn.data(), yn.data() + m, yn.data() + 2 * m);
    for (int64_t k = 0; k < m; ++k) {
      // quintic Hermite in u = (s - x0) / h: derivatives scale by h, h^2
      const double c0 = y[k], c1 = h * y[m + k], c2 = 0.5 * h * h * y[2 * m + k];
      const double A = yn[k] - (c0 + c1 + c2);
      const double B = h * yn[m + k] - (c1 + 2 * c2);
      const double C = h * h * yn[2 * m + k] - 2 * c2;
      T* c = coef + l * m * 6 + k;  // [L][6][M]
      c[0] = T(c0);
      c[m] = T(c1);
      c[2 * m] = T(c2);
      c[3 * m] = T(10 * A - 4 * B + 0.5 * C);
      c[4 * m] = T(-15 * A + 7 * B - C);
      c[5 * m] = T(6 * A - 3 * B + 0.5 * C);
    }
    std::swap(y, yn);
  }
}

template <typename T>
DPMD_CLONES void tabulate_forward(const Table<T>& t, const T* s, int64_t n0, int64_t n1, T* out, Overflow* of) {
  std::vector<double> scratch;
  int64_t a = 0, b = 0;
  for (int64_t i = n0; i < n1; ++i) eval_one<T>(t, s[i], out + i * t.m, nullptr, scratch, a, b);
  count(of, a, b);
}

template <typename T>
DPMD_CLONES void tabulate_backward(const Table<T>& t, const T* s, const T* dg, int64_t n0, int64_t n1, T* ds) {
  std::vector<double> scratch;
  std::vector<T> g(t.m), d(t.m);
  int64_t a = 0, b = 0;
  for (int64_t i = n0; i < n1; ++i) {
    eval_one(t, s[i], g.data(), d.data(), scratch, a, b);
    T acc = 0;
    const T* DPMD_RESTRICT gi = dg + i * t.m;
    const T* DPMD_RESTRICT di = d.data();
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < t.m; ++k) acc += di[k] * gi[k];
    ds[i] = acc;
  }
}

// Per atom, the sums run in a transposed accumulator acc[c][k] (contiguous over outputs k):
// plain vertical SIMD, no reductions, then one transpose into out[b][k][c].
template <typename T, int C>
DPMD_CLONES static void fusion_fw(const Table<T>& t, const T* s, const T* em, int64_t nj, int64_t nc, int64_t b0,
                                  int64_t b1, T* out, Overflow* of) {
  const int64_t m = t.m, c_ = C > 0 ? C : nc;
  std::vector<double> scratch;
  std::vector<T> gbuf(m), abuf(m * c_);
  T* DPMD_RESTRICT g = gbuf.data();
  T* DPMD_RESTRICT acc = abuf.data();
  int64_t a = 0, b = 0;
  for (int64_t bb = b0; bb < b1; ++bb) {
    std::fill(acc, acc + m * c_, T(0));
    for (int64_t j = 0; j < nj; ++j) {
      const int64_t p = bb * nj + j;
      eval_one<T>(t, s[p], g, nullptr, scratch, a, b);
      const T* e = em + p * c_;
      for (int64_t c = 0; c < c_; ++c) {
        const T ec = e[c];
        T* DPMD_RESTRICT ac = acc + c * m;
#pragma omp simd
        for (int64_t k = 0; k < m; ++k) ac[k] += g[k] * ec;
      }
    }
    T* o = out + bb * m * c_;
    for (int64_t k = 0; k < m; ++k)
      for (int64_t c = 0; c < c_; ++c) o[k * c_ + c] = acc[c * m + k];
  }
  count(of, a, b);
}

template <typename T>
void fusion_forward(const Table<T>& t, const T* s, const T* em, int64_t nj, int64_t nc, int64_t b0,
                    int64_t b1, T* out, Overflow* of) {
  if (nc == 4) return fusion_fw<T, 4>(t, s, em, nj, nc, b0, b1, out, of);
  if (nc == 1) return fusion_fw<T, 1>(t, s, em, nj, nc, b0, b1, out, of);
  fusion_fw<T, 0>(t, s, em, nj, nc, b0, b1, out, of);
}

// dout of each atom transposed once to dt[c][k]; per pair, SIMD reductions over k (OpenMP simd
// reductions: vectorized without -ffast-math).
template <typename T, int C>
DPMD_CLONES static void fusion_bw(const Table<T>& t, const T* s, const T* em, const T* dout, int64_t nj,
                                  int64_t nc, int64_t b0, int64_t b1, T* ds, T* dem) {
  const int64_t m = t.m, c_ = C > 0 ? C : nc;
  std::vector<double> scratch;
  std::vector<T> gbuf(m), dgbuf(m), tbuf(m * c_), wbuf(m);
  T* DPMD_RESTRICT g = gbuf.data();
  T* DPMD_RESTRICT dg = dgbuf.data();
  T* DPMD_RESTRICT dt = tbuf.data();
  T* DPMD_RESTRICT w = wbuf.data();
  int64_t a = 0, b = 0;
  for (int64_t bb = b0; bb < b1; ++bb) {
    const T* d = dout + bb * m * c_;
    for (int64_t k = 0; k < m; ++k)
      for (int64_t c = 0; c < c_; ++c) dt[c * m + k] = d[k * c_ + c];
    for (int64_t j = 0; j < nj; ++j) {
      const int64_t p = bb * nj + j;
      eval_one<T>(t, s[p], g, dg, scratch, a, b);
      const T* e = em + p * c_;
      T* de = dem + p * c_;
      if constexpr (C == 4) {  // water's case: one pass, five SIMD reductions
        const T *d0 = dt, *d1 = dt + m, *d2 = dt + 2 * m, *d3 = dt + 3 * m;
        const T e0 = e[0], e1 = e[1], e2 = e[2], e3 = e[3];
        T a0 = 0, a1 = 0, a2 = 0, a3 = 0, as = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, as)
        for (int64_t k = 0; k < m; ++k) {
          a0 += g[k] * d0[k];
          a1 += g[k] * d1[k];
          a2 += g[k] * d2[k];
          a3 += g[k] * d3[k];
          as += dg[k] * (d0[k] * e0 + d1[k] * e1 + d2[k] * e2 + d3[k] * e3);
        }
        de[0] = a0;
        de[1] = a1;
        de[2] = a2;
        de[3] = a3;
        ds[p] = as;
        continue;
      }
      std::fill(w, w + m, T(0));  // w[k] = sum_c dt[c][k] e[c]
      for (int64_t c = 0; c < c_; ++c) {
        const T ec = e[c];
        const T* DPMD_RESTRICT dc = dt + c * m;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < m; ++k) {
          acc += g[k] * dc[k];
          w[k] += dc[k] * ec;
        }
        de[c] = acc;
      }
      T acc_s = 0;
#pragma omp simd reduction(+ : acc_s)
      for (int64_t k = 0; k < m; ++k) acc_s += dg[k] * w[k];
      ds[p] = acc_s;
    }
  }
}

template <typename T>
void fusion_backward(const Table<T>& t, const T* s, const T* em, const T* dout, int64_t nj, int64_t nc,
                     int64_t b0, int64_t b1, T* ds, T* dem) {
  if (nc == 4) return fusion_bw<T, 4>(t, s, em, dout, nj, nc, b0, b1, ds, dem);
  if (nc == 1) return fusion_bw<T, 1>(t, s, em, dout, nj, nc, b0, b1, ds, dem);
  fusion_bw<T, 0>(t, s, em, dout, nj, nc, b0, b1, ds, dem);
}

namespace {
Overflow g_overflow;
std::atomic<int64_t> g_calls{0};
std::mutex g_report;
}  // namespace

Overflow* overflow_counter(const Grid& g) { return g.check_frequency > 0 ? &g_overflow : nullptr; }

void overflow_report(const Grid& g) {
  if (g.check_frequency <= 0 || ++g_calls < g.check_frequency) return;
  std::lock_guard<std::mutex> lock(g_report);
  if (g_calls < g.check_frequency) return;  // another thread reported meanwhile
  g_calls = 0;                             // calls since the last report
  const int64_t a = g_overflow.beyond_data.exchange(0), b = g_overflow.beyond_table.exchange(0);
  if (a > 0)
    std::fprintf(stderr,
                 "deepmd_md: compressed model: %lld neighbor(s) beyond the training-data range of the "
                 "tabulated embedding in the last %lld evaluations (%lld beyond the extrapolated table, "
                 "evaluated by the net)\n",
                 (long long)a, (long long)g.check_frequency, (long long)b);
}

#define DPMD_TAB_INSTANTIATE(T)                                                                          \
  template void build_table<T>(const Net&, const Grid&, T*);                                             \
  template void tabulate_forward<T>(const Table<T>&, const T*, int64_t, int64_t, T*, Overflow*);         \
  template void tabulate_backward<T>(const Table<T>&, const T*, const T*, int64_t, int64_t, T*);         \
  template void fusion_forward<T>(const Table<T>&, const T*, const T*, int64_t, int64_t, int64_t,        \
                                  int64_t, T*, Overflow*);                                               \
  template void fusion_backward<T>(const Table<T>&, const T*, const T*, const T*, int64_t, int64_t,      \
                                   int64_t, int64_t, T*, T*);
DPMD_TAB_INSTANTIATE(float)
DPMD_TAB_INSTANTIATE(double)

}  // namespace dpmd::kernels
