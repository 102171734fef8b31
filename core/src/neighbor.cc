// deepmd_md core: periodic images and neighbor lists built by the core itself, for engines that
// pass only their atoms and the box (no ghosts, no neighbor list). Same neighbors as Python's
// deepmd_md/data/neighbor.py (every atom within the cutoff), so both give the same numbers.
#include "neighbor.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dpmd {

namespace {

// inverse of the 3x3 cell (rows are cell vectors): frac = x . inv
std::array<double, 9> inverse(const double* b) {
  const double det = b[0] * (b[4] * b[8] - b[5] * b[7]) - b[1] * (b[3] * b[8] - b[5] * b[6]) +
                     b[2] * (b[3] * b[7] - b[4] * b[6]);
  if (!(std::abs(det) > 1e-12)) throw std::runtime_error("the box is singular (zero volume)");
  const double d = 1.0 / det;
  return {(b[4] * b[8] - b[5] * b[7]) * d, (b[2] * b[7] - b[1] * b[8]) * d, (b[1] * b[5] - b[2] * b[4]) * d,
          (b[5] * b[6] - b[3] * b[8]) * d, (b[0] * b[8] - b[2] * b[6]) * d, (b[2] * b[3] - b[0] * b[5]) * d,
          (b[3] * b[7] - b[4] * b[6]) * d, (b[1] * b[6] - b[0] * b[7]) * d, (b[0] * b[4] - b[1] * b[3]) * d};
}

}  // namespace

void periodic_images(const double* x, const int* atype, int nloc, const double* box, double cut, Images& out) {
  const auto inv = inverse(box);
  // reach of the cutoff in fractional units per direction: cut / (distance between faces)
  double reach[3];
  int nimg[3];
  for (int d = 0; d < 3; ++d) {
    reach[d] = cut * std::sqrt(inv[d] * inv[d] + inv[3 + d] * inv[3 + d] + inv[6 + d] * inv[6 + d]);
    nimg[d] = int(std::ceil(reach[d]));
  }
  out.coord.resize(3 * size_t(nloc));
  out.atype.assign(atype, atype + nloc);
  out.mapping.resize(nloc);
  std::vector<double> frac(3 * size_t(nloc));
  for (int i = 0; i < nloc; ++i) {
    out.mapping[i] = i;
    for (int d = 0; d < 3; ++d) {
      const double f = x[3 * i] * inv[d] + x[3 * i + 1] * inv[3 + d] + x[3 * i + 2] * inv[6 + d];
      if (!std::isfinite(f)) throw std::runtime_error("atom " + std::to_string(i) + " has a non-finite coordinate");
      frac[3 * i + d] = f - std::floor(f);  // wrapped into the cell
    }
    // local atoms wrapped too, so that the images around the cell are their neighbors
    for (int d = 0; d < 3; ++d)
      out.coord[3 * i + d] = frac[3 * i] * box[d] + frac[3 * i + 1] * box[3 + d] + frac[3 * i + 2] * box[6 + d];
  }
  for (int a = -nimg[0]; a <= nimg[0]; ++a)
    for (int b = -nimg[1]; b <= nimg[1]; ++b)
      for (int c = -nimg[2]; c <= nimg[2]; ++c) {
        if (a == 0 && b == 0 && c == 0) continue;
        const int s[3] = {a, b, c};
        for (int i = 0; i < nloc; ++i) {
          bool keep = true;
          double f[3];
          for (int d = 0; d < 3 && keep; ++d) {
            f[d] = frac[3 * i + d] + s[d];
            keep = f[d] >= -reach[d] && f[d] < 1.0 + reach[d];
          }
          if (!keep) continue;
          for (int d = 0; d < 3; ++d)
            out.coord.push_back(f[0] * box[d] + f[1] * box[3 + d] + f[2] * box[6 + d]);
          out.atype.push_back(atype[i]);
          out.mapping.push_back(i);
        }
      }
}

void neighbor_list(const double* x, int nloc, int nall, double cut, NeighborList& out) {
  out.start.assign(size_t(nloc) + 1, 0);
  out.index.clear();
  if (nall == 0) return;
  double lo[3], hi[3];
  for (int d = 0; d < 3; ++d) lo[d] = hi[d] = x[d];
  for (int i = 0; i < nall; ++i)
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::min(lo[d], x[3 * i + d]);
      hi[d] = std::max(hi[d], x[3 * i + d]);
    }
  // bins of side >= cut: neighbors sit in the 27 bins around an atom's own
  int nb[3];
  for (int d = 0; d < 3; ++d) nb[d] = std::max(1, std::min(1024, int((hi[d] - lo[d]) / cut)));
  auto bin_of = [&](const double* p, int d) {
    return std::min(nb[d] - 1, int((p[d] - lo[d]) / (hi[d] - lo[d] + 1e-300) * nb[d]));
  };
  const size_t nbins = size_t(nb[0]) * nb[1] * nb[2];
  std::vector<int> head(nbins + 1, 0), atoms(nall);
  std::vector<int> bin(nall);
  for (int i = 0; i < nall; ++i) {
    const double* p = x + 3 * size_t(i);
    bin[i] = (bin_of(p, 0) * nb[1] + bin_of(p, 1)) * nb[2] + bin_of(p, 2);
    head[bin[i] + 1]++;
  }
  for (size_t b = 0; b < nbins; ++b) head[b + 1] += head[b];
  std::vector<int> fill(head.begin(), head.end() - 1);
  for (int i = 0; i < nall; ++i) atoms[fill[bin[i]]++] = i;
  const double c2 = cut * cut;
  for (int i = 0; i < nloc; ++i) {
    const double* p = x + 3 * size_t(i);
    const int bi[3] = {bin_of(p, 0), bin_of(p, 1), bin_of(p, 2)};
    for (int a = std::max(0, bi[0] - 1); a <= std::min(nb[0] - 1, bi[0] + 1); ++a)
      for (int b = std::max(0, bi[1] - 1); b <= std::min(nb[1] - 1, bi[1] + 1); ++b)
        for (int c = std::max(0, bi[2] - 1); c <= std::min(nb[2] - 1, bi[2] + 1); ++c) {
          const size_t k = (size_t(a) * nb[1] + b) * nb[2] + c;
          for (int q = head[k]; q < head[k + 1]; ++q) {
            const int j = atoms[q];
            if (j == i) continue;
            const double* r = x + 3 * size_t(j);
            const double dx = r[0] - p[0], dy = r[1] - p[1], dz = r[2] - p[2];
            if (dx * dx + dy * dy + dz * dz < c2) out.index.push_back(j);
          }
        }
    out.start[i + 1] = int(out.index.size());
  }
}

}  // namespace dpmd
