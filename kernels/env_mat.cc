// The environment-matrix kernel (math and layouts: env_mat.h).
#include "env_mat.h"

#include <cmath>

namespace dpmd::kernels {

namespace {

// sw(d) and sw'(d) with the reference's comparisons (d < rs: 1, d < rc: polynomial, else 0).
template <typename T>
inline void switch_fn(T d, T rs, T rc, T& sw, T& dsw) {
  if (d < rs) {
    sw = T(1);
    dsw = T(0);
  } else if (d < rc) {
    const T inv = T(1) / (rc - rs);
    const T u = (d - rs) * inv;
    const T u2 = u * u;
    sw = u2 * u * (T(-6) * u2 + T(15) * u - T(10)) + T(1);
    dsw = T(-30) * u2 * (u - T(1)) * (u - T(1)) * inv;
  } else {
    sw = T(0);
    dsw = T(0);
  }
}

}  // namespace

template <typename T>
void env_mat_forward(const EnvMatParams& p, const T* coord, const int64_t* nlist, const int64_t* atype,
                     const T* avg, const T* std, int64_t nnei, int64_t a, int64_t b, T* out) {
  const int64_t nc = p.ncol;
  const T rs = T(p.rcut_smth), rc = T(p.rcut);
  for (int64_t i = a; i < b; ++i) {
    const T* av = avg + atype[i] * nc;
    const T* sd = std + atype[i] * nc;
    const T xi = coord[3 * i], yi = coord[3 * i + 1], zi = coord[3 * i + 2];
    for (int64_t k = 0; k < nnei; ++k) {
      const int64_t j = nlist[i * nnei + k];
      T* o = out + (i * nnei + k) * nc;
      T raw[4] = {T(0), T(0), T(0), T(0)};
      if (j >= 0) {
        const T rx = coord[3 * j] - xi, ry = coord[3 * j + 1] - yi, rz = coord[3 * j + 2] - zi;
        const T d = std::sqrt(rx * rx + ry * ry + rz * rz);
        T sw, dsw;
        switch_fn(d, rs, rc, sw, dsw);
        const T s = sw / d;
        raw[0] = s;
        if (nc == 4) {
          const T s2 = s / d;
          raw[1] = s2 * rx;
          raw[2] = s2 * ry;
          raw[3] = s2 * rz;
        }
      }
      for (int64_t c = 0; c < nc; ++c) o[c] = (raw[c] - av[c]) / sd[c];
    }
  }
}

template <typename T>
void env_mat_backward(const EnvMatParams& p, const T* coord, const int64_t* nlist, const int64_t* atype,
                      const T* std, const T* grad, int64_t nnei, int64_t a, int64_t b, T* grad_coord) {
  const int64_t nc = p.ncol;
  const T rs = T(p.rcut_smth), rc = T(p.rcut);
  for (int64_t i = a; i < b; ++i) {
    const T* sd = std + atype[i] * nc;
    const T xi = coord[3 * i], yi = coord[3 * i + 1], zi = coord[3 * i + 2];
    T gi[3] = {T(0), T(0), T(0)};
    for (int64_t k = 0; k < nnei; ++k) {
      const int64_t j = nlist[i * nnei + k];
      if (j < 0) continue;  // an empty slot's row is constant
      const T r[3] = {coord[3 * j] - xi, coord[3 * j + 1] - yi, coord[3 * j + 2] - zi};
      const T d2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
      const T d = std::sqrt(d2);
      T sw, dsw;
      switch_fn(d, rs, rc, sw, dsw);
      if (sw == T(0) && dsw == T(0)) continue;  // beyond rcut: constant zero row
      const T* gr = grad + (i * nnei + k) * nc;
      const T inv = T(1) / d, inv2 = inv * inv;
      // d(raw_0)/dr = (sw'/d - sw/d^2) r/d
      const T g0 = gr[0] / sd[0];
      T coef_r = g0 * (dsw * inv - sw * inv2) * inv;  // multiplies r
      T g[3] = {T(0), T(0), T(0)};
      if (nc == 4) {
        // raw_c = sw r_c / d^2: d/dr_l = (sw'/d - 2 sw/d^2) r_c r_l / d^2 + sw/d^2 delta_cl
        const T gc[3] = {gr[1] / sd[1], gr[2] / sd[2], gr[3] / sd[3]};
        const T dot = gc[0] * r[0] + gc[1] * r[1] + gc[2] * r[2];
        coef_r += dot * (dsw * inv - T(2) * sw * inv2) * inv2;
        const T a2 = sw * inv2;
        for (int l = 0; l < 3; ++l) g[l] = a2 * gc[l];
      }
      for (int l = 0; l < 3; ++l) {
        g[l] += coef_r * r[l];
        grad_coord[3 * j + l] += g[l];
        gi[l] -= g[l];
      }
    }
    for (int l = 0; l < 3; ++l) grad_coord[3 * i + l] += gi[l];
  }
}

namespace {

// rows of centers [a, b) and their first column s; empty slots' em zeroed when skip_empty
template <typename T>
void rows_of(const EnvMatParams& p, const T* coord, const int64_t* nlist, const int64_t* atype, const T* avg,
             const T* std, int64_t nnei, bool skip_empty, int64_t a, int64_t b, T* rows, T* s) {
  env_mat_forward<T>(p, coord, nlist, atype, avg, std, nnei, a, b, rows);
  for (int64_t q = a * nnei; q < b * nnei; ++q) {
    s[q] = rows[4 * q];
    if (skip_empty && nlist[q] < 0) rows[4 * q] = rows[4 * q + 1] = rows[4 * q + 2] = rows[4 * q + 3] = T(0);
  }
}

}  // namespace

template <typename T>
void se_a_block_forward(const EnvMatParams& p, const Table<T>& t, const T* coord, const int64_t* nlist,
                        const int64_t* atype, const T* avg, const T* std, int64_t nnei, bool skip_empty,
                        int64_t a, int64_t b, T* rows, T* s, T* out, Overflow* of) {
  constexpr int64_t kBlock = 16;  // centers per pass: their rows stay in cache for the fusion
  for (int64_t a0 = a; a0 < b; a0 += kBlock) {
    const int64_t b0 = a0 + kBlock < b ? a0 + kBlock : b;
    rows_of<T>(p, coord, nlist, atype, avg, std, nnei, skip_empty, a0, b0, rows, s);
    fusion_forward<T>(t, s, rows, nnei, 4, a0, b0, out, of);
  }
}

template <typename T>
void se_a_block_backward(const EnvMatParams& p, const Table<T>& t, const T* coord, const int64_t* nlist,
                         const int64_t* atype, const T* avg, const T* std, int64_t nloc, int64_t nnei,
                         bool skip_empty, const T* dout, T* rows, T* grad_rows, T* s, T* ds, T* grad_coord) {
  constexpr int64_t kBlock = 16;
  for (int64_t a0 = 0; a0 < nloc; a0 += kBlock) {
    const int64_t b0 = a0 + kBlock < nloc ? a0 + kBlock : nloc;
    rows_of<T>(p, coord, nlist, atype, avg, std, nnei, skip_empty, a0, b0, rows, s);
    fusion_backward<T>(t, s, rows, dout, nnei, 4, a0, b0, ds, grad_rows);
    // d/d row: dem (masked slots are constant rows: env_mat_backward skips them) + ds on s
    for (int64_t q = a0 * nnei; q < b0 * nnei; ++q) grad_rows[4 * q] += ds[q];
    env_mat_backward<T>(p, coord, nlist, atype, std, grad_rows, nnei, a0, b0, grad_coord);
  }
}

int64_t env_mat_bad_index(const int64_t* nlist, int64_t n, int64_t nall) {
  for (int64_t k = 0; k < n; ++k)
    if (nlist[k] < -1 || nlist[k] >= nall) return nlist[k];
  return -2;
}

template void env_mat_forward<float>(const EnvMatParams&, const float*, const int64_t*, const int64_t*,
                                     const float*, const float*, int64_t, int64_t, int64_t, float*);
template void env_mat_forward<double>(const EnvMatParams&, const double*, const int64_t*, const int64_t*,
                                      const double*, const double*, int64_t, int64_t, int64_t, double*);
template void env_mat_backward<float>(const EnvMatParams&, const float*, const int64_t*, const int64_t*,
                                      const float*, const float*, int64_t, int64_t, int64_t, float*);
template void env_mat_backward<double>(const EnvMatParams&, const double*, const int64_t*, const int64_t*,
                                       const double*, const double*, int64_t, int64_t, int64_t, double*);

#define DPMD_SE_A_INSTANTIATE(T)                                                                            \
  template void se_a_block_forward<T>(const EnvMatParams&, const Table<T>&, const T*, const int64_t*,          \
                                      const int64_t*, const T*, const T*, int64_t, bool, int64_t, int64_t, T*, \
                                      T*, T*, Overflow*);                                                      \
  template void se_a_block_backward<T>(const EnvMatParams&, const Table<T>&, const T*, const int64_t*,         \
                                       const int64_t*, const T*, const T*, int64_t, int64_t, bool, const T*,   \
                                       T*, T*, T*, T*, T*);
DPMD_SE_A_INSTANTIATE(float)
DPMD_SE_A_INSTANTIATE(double)

}  // namespace dpmd::kernels
