// Periodic images and neighbor lists built by the core (engines that pass only their atoms).
#pragma once
#include <vector>

namespace dpmd {

struct Images {
  std::vector<double> coord;  // nall*3: the nloc atoms wrapped into the cell, then their images
  std::vector<int> atype;     // nall
  std::vector<int> mapping;   // nall: the local atom each row is a copy of
};

// Local atoms x [nloc*3] in the periodic cell `box` (rows are cell vectors) and every image
// within `cut` of the cell (so of any atom in it). Throws on a singular box or NaN coordinates.
void periodic_images(const double* x, const int* atype, int nloc, const double* box, double cut, Images& out);

struct NeighborList {
  std::vector<int> start;  // nloc+1: row i is index[start[i] .. start[i+1])
  std::vector<int> index;  // neighbors of local atom i among all nall atoms, within cut
};

// Full neighbor list of atoms 0..nloc-1 among 0..nall-1 (cell list, O(nall)).
void neighbor_list(const double* x, int nloc, int nall, double cut, NeighborList& out);

}  // namespace dpmd
