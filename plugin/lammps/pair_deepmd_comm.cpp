// pair_style deepmd (deepmd_md): the ghost side. Owners of ghost atoms on one rank, and rows of
// per-atom features through LAMMPS' forward/reverse communication: the engine half of the core's
// exchange (docs/core_contract.md), used by message-passing models across MPI ranks.
#include <algorithm>

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "pair_deepmd.h"

using namespace LAMMPS_NS;

/* Owner (local index) of every local and ghost atom, on one rank where each ghost is a
   periodic image of a local atom: the local atom with the ghost's atom ID. LAMMPS' atom map
   gives it when there is one (it stores owned atoms over their ghost images); else a map of
   our own over the local atoms. */
void PairDeepMD::build_owner(int nlocal, int nall)
{
  const tagint *tag = atom->tag;
  owner.resize(size_t(nall) + 1);
  const bool lmp_map = atom->map_style != Atom::MAP_NONE;
  if (!lmp_map) {
    tag_local.clear();
    tag_local.reserve(size_t(nlocal));
    for (int i = 0; i < nlocal; ++i) tag_local[tag[i]] = i;
  }
  for (int i = 0; i < nlocal; ++i) owner[i] = i;
  for (int i = nlocal; i < nall; ++i) {
    int o = -1;
    if (lmp_map) {
      o = atom->map(tag[i]);
    } else {
      auto it = tag_local.find(tag[i]);
      if (it != tag_local.end()) o = it->second;
    }
    if (o < 0 || o >= nlocal)
      error->one(FLERR, "deepmd: ghost atom {} (ID {}) has no local owner on this rank", i, (long long) tag[i]);
    owner[i] = o;
  }
}

void PairDeepMD::fold_ghosts(int stride)
{
  comm_rows(rcbuf.data(), stride, false);
}

/* Rows [nall, ncol] through LAMMPS' communication, in passes of at most comm_forward /
   comm_reverse columns: forward copies owners' rows into their ghosts, reverse adds ghost
   rows into their owners'. */
void PairDeepMD::comm_rows(double *rows, int ncol, bool forward)
{
  const int cap = forward ? comm_forward : comm_reverse;
  if (cap <= 0) error->one(FLERR, "deepmd: internal error: no communication buffer for feature rows");
  xrows = rows;
  xstride = ncol;
  for (xcol0 = 0; xcol0 < ncol; xcol0 += cap) {
    xncol = std::min(cap, ncol - xcol0);
    if (forward)
      comm->forward_comm(this, xncol);
    else
      comm->reverse_comm(this, xncol);
  }
}

int PairDeepMD::exchange_forward(void *ctx, double *rows, int ncol)
{
  static_cast<PairDeepMD *>(ctx)->comm_rows(rows, ncol, true);
  return 0;
}

int PairDeepMD::exchange_reverse(void *ctx, double *rows, int ncol)
{
  static_cast<PairDeepMD *>(ctx)->comm_rows(rows, ncol, false);
  return 0;
}

int PairDeepMD::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  int m = 0;
  for (int ii = 0; ii < n; ++ii) {
    const double *r = xrows + size_t(list[ii]) * xstride + xcol0;
    for (int c = 0; c < xncol; ++c) buf[m++] = r[c];
  }
  return m;
}

void PairDeepMD::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; ++i) {
    double *r = xrows + size_t(i) * xstride + xcol0;
    for (int c = 0; c < xncol; ++c) r[c] = buf[m++];
  }
}

int PairDeepMD::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; ++i) {
    const double *r = xrows + size_t(i) * xstride + xcol0;
    for (int c = 0; c < xncol; ++c) buf[m++] = r[c];
  }
  return m;
}

void PairDeepMD::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  for (int ii = 0; ii < n; ++ii) {
    double *r = xrows + size_t(list[ii]) * xstride + xcol0;
    for (int c = 0; c < xncol; ++c) r[c] += buf[m++];
  }
}
