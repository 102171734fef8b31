// pair_style deepmd: model deviation (DeePMD-kit's model_devi.out) of several models, every
// out_freq steps: force deviation per atom folded onto owners, virial deviation, gathered on rank 0.
#include <algorithm>
#include <cmath>
#include <limits>

#include "atom.h"
#include "comm.h"
#include "pair_deepmd.h"

using namespace LAMMPS_NS;

/* virials: nm x 9 model virials of this rank (summed over ranks here); fbuf: nm x nall x 3 forces */
void PairDeepMD::model_deviation(int nlocal, int nall, std::vector<double> &virials, bigint step)
{
  const int nm = int(models.size());
  last_devi_step = step;
  // all models' virials summed over ranks
  std::vector<double> vall(size_t(nm) * 9);
  MPI_Allreduce(virials.data(), vall.data(), nm * 9, MPI_DOUBLE, MPI_SUM, world);
  virials.swap(vall);
  // all models' forces folded onto owners
  const int stride = 3 * nm;
  rcbuf.assign(size_t(nall) * stride, 0.0);
  for (int i = 0; i < nall; ++i)
    for (int k = 0; k < nm; ++k)
      for (int d = 0; d < 3; ++d) rcbuf[size_t(i) * stride + 3 * k + d] = fbuf[size_t(k) * nall * 3 + 3 * i + d];
  fold_ghosts(stride);
  std::vector<double> devi_f(nlocal);
  for (int i = 0; i < nlocal; ++i) {
    const double *r = rcbuf.data() + size_t(i) * stride;
    double mean[3] = {0, 0, 0};
    for (int k = 0; k < nm; ++k)
      for (int d = 0; d < 3; ++d) mean[d] += r[3 * k + d];
    for (double &m : mean) m /= nm;
    double s = 0.0;
    for (int k = 0; k < nm; ++k)
      for (int d = 0; d < 3; ++d) s += (r[3 * k + d] - mean[d]) * (r[3 * k + d] - mean[d]);
    double e = std::sqrt(s / nm);
    if (relative_f >= 0.0) e /= std::sqrt(mean[0] * mean[0] + mean[1] * mean[1] + mean[2] * mean[2]) + relative_f;
    devi_f[i] = e;
  }
  double lmax = 0.0, lmin = std::numeric_limits<double>::max(), lsum = 0.0;
  for (double e : devi_f) {
    lmax = std::max(lmax, e);
    lmin = std::min(lmin, e);
    lsum += e;
  }
  double gmax, gmin, gsum;
  MPI_Reduce(&lmax, &gmax, 1, MPI_DOUBLE, MPI_MAX, 0, world);
  MPI_Reduce(&lmin, &gmin, 1, MPI_DOUBLE, MPI_MIN, 0, world);
  MPI_Reduce(&lsum, &gsum, 1, MPI_DOUBLE, MPI_SUM, 0, world);

  // per-atom values gathered by atom ID
  std::vector<double> atomic_all;
  if (out_atomic) {
    int n = nlocal;
    std::vector<int> counts(comm->nprocs), displs(comm->nprocs);
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    std::vector<double> send(2 * size_t(nlocal));
    for (int i = 0; i < nlocal; ++i) {
      send[2 * i] = double(atom->tag[i]);
      send[2 * i + 1] = devi_f[i];
    }
    std::vector<double> recv;
    if (comm->me == 0) {
      int tot = 0;
      for (int p = 0; p < comm->nprocs; ++p) {
        counts[p] *= 2;
        displs[p] = tot;
        tot += counts[p];
      }
      recv.resize(std::max(tot, 1));
    }
    MPI_Gatherv(send.data(), 2 * nlocal, MPI_DOUBLE, recv.data(), counts.data(), displs.data(), MPI_DOUBLE, 0,
                world);
    if (comm->me == 0) {
      std::vector<std::pair<double, double>> byid;
      for (size_t q = 0; q + 1 < recv.size(); q += 2) byid.emplace_back(recv[q], recv[q + 1]);
      if (displs.size() && byid.size() > size_t(atom->natoms)) byid.resize(atom->natoms);
      std::sort(byid.begin(), byid.end());
      for (auto &p : byid) atomic_all.push_back(p.second);
    }
  }

  if (comm->me == 0 && devi_fp) {
    const double natoms = double(std::max<bigint>(atom->natoms, 1));
    double mv[9] = {0};
    for (int k = 0; k < nm; ++k)
      for (int c = 0; c < 9; ++c) mv[c] += virials[9 * k + c] / natoms / nm;
    double mnorm = 0.0;
    for (double x : mv) mnorm += x * x;
    mnorm = std::sqrt(mnorm);
    double vmax = 0.0, vmin = std::numeric_limits<double>::max(), vsq = 0.0;
    for (int c = 0; c < 9; ++c) {
      double s = 0.0;
      for (int k = 0; k < nm; ++k) {
        double d = virials[9 * k + c] / natoms - mv[c];
        s += d * d;
      }
      double e = std::sqrt(s / nm);
      if (relative_v >= 0.0) e /= mnorm + relative_v;
      vmax = std::max(vmax, e);
      vmin = std::min(vmin, e);
      vsq += e * e;
    }
    double vavg = std::sqrt(vsq / 9.0);
    fprintf(devi_fp, "%12lld %18.6e %18.6e %18.6e %18.6e %18.6e %18.6e", (long long) step, vmax, vmin, vavg, gmax,
            gmin, gsum / natoms);
    for (double e : atomic_all) fprintf(devi_fp, " %18.6e", e);
    fprintf(devi_fp, "\n");
    fflush(devi_fp);
  }
}
