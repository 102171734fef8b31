// The smooth environment matrix of a neighbor list, normalised, and its backward: no framework
// dependency. The same math as deepmd_md/model/env.py (env_matrix) and se_e2.normalised_env,
// which stay the reference; this is the fused form the compressed models' ops call.
//
// For center i (local, type t_i) and slot k of its list holding neighbor j (-1 = empty slot):
//   r = x_j - x_i, d = |r|, sw(d) = 1 (d < rs), u^3 (-6u^2 + 15u - 10) + 1 (rs <= d < rc),
//   0 (d >= rc), u = (d - rs) / (rc - rs);
//   raw row = (sw/d, sw r_x/d^2, sw r_y/d^2, sw r_z/d^2), or (sw/d) alone (radial, ncol 1);
//   empty slot: raw row = 0.
//   out row = (raw - avg[t_i]) / std[t_i].
// Backward: grad of out rows -> grad of the coordinates; each pair adds g = sum_c dL/dout_c
// d out_c / d r to x_j and subtracts it from x_i (serial scatter: deterministic sums).
//
// Layouts (row-major, contiguous), per frame; T float or double:
//   coord [nall, 3] T, nlist [nloc, nnei] int64 (values in [-1, nall)), atype [nloc] int64
//   (center types, in [0, ntypes)), avg/std [ntypes, ncol] T, out/grad [nloc, nnei, ncol] T,
//   grad_coord [nall, 3] T (accumulated into: zero it first).
#pragma once

#include <cstdint>

#include "tabulate.h"

namespace dpmd::kernels {

struct EnvMatParams {
  double rcut_smth, rcut;
  int64_t ncol;  // 4 (se_e2_a rows) or 1 (radial, se_e2_r)
};

// out rows of centers [a, b) (a..b-1 local atoms).
template <typename T>
void env_mat_forward(const EnvMatParams& p, const T* coord, const int64_t* nlist, const int64_t* atype,
                     const T* avg, const T* std, int64_t nnei, int64_t a, int64_t b, T* out);

// grad_coord += d(sum grad . out) / d coord for centers [a, b).
template <typename T>
void env_mat_backward(const EnvMatParams& p, const T* coord, const int64_t* nlist, const int64_t* atype,
                      const T* std, const T* grad, int64_t nnei, int64_t a, int64_t b, T* grad_coord);

// Index check: the first entry of nlist [n] outside [-1, nall), or -2 when every one is in range
// (an op raises its framework's error with it).
int64_t env_mat_bad_index(const int64_t* nlist, int64_t n, int64_t nall);

// The compressed se_e2_a block in one pass (env rows, then kernels/tabulate's fusion):
//   out[i] = sum_k G(row_ik[0]) (x) em_ik  [nloc, M, 4], em_ik = row_ik, or 0 for an empty slot
//   when skip_empty (the engines' masked lists; else an empty slot counts as a row -avg/std).
// rows [nloc, nnei, 4], s [nloc, nnei]: scratch of the caller. Centers [a, b).
template <typename T>
void se_a_block_forward(const EnvMatParams& p, const Table<T>& t, const T* coord, const int64_t* nlist,
                        const int64_t* atype, const T* avg, const T* std, int64_t nnei, bool skip_empty,
                        int64_t a, int64_t b, T* rows, T* s, T* out, Overflow* of);

// Its backward, all centers: grad_coord += d(sum dout . out)/d coord (zero it first).
// Scratch: rows, grad_rows [nloc, nnei, 4], s, ds [nloc, nnei].
template <typename T>
void se_a_block_backward(const EnvMatParams& p, const Table<T>& t, const T* coord, const int64_t* nlist,
                         const int64_t* atype, const T* avg, const T* std, int64_t nloc, int64_t nnei,
                         bool skip_empty, const T* dout, T* rows, T* grad_rows, T* s, T* ds, T* grad_coord);

}  // namespace dpmd::kernels
