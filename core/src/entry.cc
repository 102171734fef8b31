// deepmd_md core: dpmd_compute, and what the core does when the engine did not give it: its own
// neighbor list and periodic images (compute_self), or, for message-passing models without an
// exchange, the widened ghost shell (compute_widened). The evaluation itself: compute.cc.
#include <cmath>
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.h"
#include "neighbor.h"

namespace {

using dpmd::compute_listed;

// No neighbor list from the engine: the core builds it (every atom within rcut), and when the
// engine gave a box but no ghosts, the periodic images too; forces and per-atom virials of the
// images are then folded onto their atoms, so the engine gets nloc rows back.
void compute_self(dpmd_model* m, const dpmd_input* in, dpmd_output* out) {
  dpmd::SelfBuilt& sb = m->self;
  dpmd_input self = *in;
  self.size = sizeof(dpmd_input);
  const int nloc = in->nloc;
  const bool images = in->nghost == 0 && in->box != nullptr;
  if (nloc > 0 && (!in->coord || !in->atype)) throw std::runtime_error("coord and atype must be provided");
  if (images) {
    dpmd::periodic_images(in->coord, in->atype, nloc, in->box, m->info.ghost_cutoff, sb.img);
    self.coord = sb.img.coord.data();
    self.atype = sb.img.atype.data();
    self.nghost = int(sb.img.atype.size()) - nloc;
    self.mapping = sb.img.mapping.data();
    self.exchange = nullptr;  // every image's owner is here
  }
  const int nall = self.nloc + self.nghost;
  dpmd::neighbor_list(self.coord, nloc, nall, m->info.rcut, sb.nl);
  sb.ilist.resize(nloc);
  sb.numneigh.resize(nloc);
  sb.firstneigh.resize(nloc);
  for (int i = 0; i < nloc; ++i) {
    sb.ilist[i] = i;
    sb.numneigh[i] = sb.nl.start[i + 1] - sb.nl.start[i];
    sb.firstneigh[i] = sb.nl.index.data() + sb.nl.start[i];
  }
  self.inum = nloc;
  self.ilist = sb.ilist.data();
  self.numneigh = sb.numneigh.data();
  self.firstneigh = sb.firstneigh.data();
  if (!images) {
    compute_listed(m, &self, out);
    return;
  }
  dpmd_output o = *out;
  sb.force.assign(3 * size_t(nall), 0.0);
  o.force = sb.force.data();
  if (out->atom_virial) {
    sb.atom_virial.assign(9 * size_t(nall), 0.0);
    o.atom_virial = sb.atom_virial.data();
  }
  compute_listed(m, &self, &o);
  out->energy = o.energy;
  std::copy(o.virial, o.virial + 9, out->virial);
  std::fill(out->force, out->force + 3 * size_t(nloc), 0.0);
  if (out->atom_virial) std::fill(out->atom_virial, out->atom_virial + 9 * size_t(nloc), 0.0);
  for (int i = 0; i < nall; ++i) {
    const int o_i = sb.img.mapping[i];
    for (int d = 0; d < 3; ++d) out->force[3 * o_i + d] += sb.force[3 * size_t(i) + d];
    if (out->atom_virial)
      for (int c = 0; c < 9; ++c) out->atom_virial[9 * o_i + c] += sb.atom_virial[9 * size_t(i) + c];
  }
}

// A message-passing model with ghosts but no mapping and no exchange it can use (none given, or
// a model without the exchange op, whatever the engine passes): when the engine's ghosts reach
// the receptive field and the model weighs atom energies, every atom is evaluated as if local
// (the core lists the ghosts' neighbors too) and only the local atoms' energies count
// (atom_weight); their features near the shell's edge are wrong but never reach a local atom.
// Otherwise one error naming what to set.
bool widened_shell(const dpmd_model* m, const dpmd_input* in) {
  const dpmd::ModelInfo& info = m->info;
  const bool has_ex = in->size >= offsetof(dpmd_input, exchange) + sizeof(in->exchange) && in->exchange;
  if (!info.message_passing || in->mapping || in->nghost == 0 || (has_ex && info.exchange_op)) return false;
  const double reach =
      in->size >= offsetof(dpmd_input, ghost_cutoff) + sizeof(double) ? in->ghost_cutoff : 0.0;
  const double field = info.receptive_field;
  const bool deep = reach >= field * (1.0 - 1e-12);  // (field + skin) - skin may round below
  if (info.weighted && deep && info.dim_aparam == 0) return true;
  char num[64];
  std::snprintf(num, sizeof(num), "%.4g A; dpmd_input.ghost_cutoff is %.4g A", field, reach);
  const std::string what =
      "this model passes messages between atoms (metadata message_passing: true): the engine must give "
      "dpmd_input.exchange (ghost features exchanged between domains; the model needs the ghost-exchange op), "
      "or in one domain dpmd_input.mapping (the owner of every ghost), or ghosts out to the model's receptive "
      "field (" + std::string(num) + ")";
  if (!info.weighted)
    throw std::runtime_error(what + (info.exchange_op
                                         ? ". This file was frozen before the atom_weight input: give it the "
                                           "exchange, or freeze it again with this deepmd_md"
                                         : ". This file has neither the ghost-exchange op nor the atom_weight input "
                                           "(frozen before them): it runs in one domain only; freeze it again with "
                                           "this deepmd_md to run it across domains"));
  if (info.dim_aparam > 0)
    throw std::runtime_error(what + ". Ghosts out to the receptive field need atomic parameters for every ghost, "
                             "which dpmd_input.aparam does not carry: use an exchange or one domain");
  throw std::runtime_error(what + (has_ex ? ". dpmd_input.exchange cannot serve this model (frozen without the "
                                            "ghost-exchange op): widen the ghost shell and set dpmd_input.ghost_cutoff"
                                          : ""));
}

void compute_widened(dpmd_model* m, const dpmd_input* in, dpmd_output* out) {
  const int nloc = in->nloc, nall = in->nloc + in->nghost;
  dpmd_input w = *in;
  w.size = sizeof(dpmd_input);
  w.nloc = nall;
  w.nghost = 0;
  w.ilist = nullptr;  // the core lists every atom's neighbors
  w.box = nullptr;    // the ghosts are the images: build none
  w.mapping = nullptr;
  w.exchange = nullptr;
  m->weight.assign(nall, 0.0);
  std::fill(m->weight.begin(), m->weight.begin() + nloc, 1.0);
  std::vector<double> ae(out->atom_energy ? nall : 0);
  dpmd_output o = *out;
  o.atom_energy = out->atom_energy ? ae.data() : nullptr;
  try {
    compute_self(m, &w, &o);
  } catch (...) {
    m->weight.clear();
    throw;
  }
  m->weight.clear();
  out->energy = o.energy;
  std::copy(o.virial, o.virial + 9, out->virial);
  if (out->atom_energy) std::copy(ae.begin(), ae.begin() + nloc, out->atom_energy);
}

}  // namespace

// NaN or inf coordinates (a run that blew up) would index the cell list out of bounds and
// poison every sum: refuse them by name, whatever path follows.
static void check_finite(const dpmd_input* in) {
  if (!in->coord || in->nloc < 0 || in->nghost < 0) return;  // the paths report these
  const int64_t n = int64_t(in->nloc) + in->nghost;
  for (int64_t i = 0; i < 3 * n; ++i)
    if (!std::isfinite(in->coord[i]))
      throw std::runtime_error("coordinate " + std::to_string(i % 3) + " of atom " + std::to_string(i / 3) +
                               " is not finite (NaN or inf): the input is corrupt or the run has blown up");
  if (in->box)
    for (int k = 0; k < 9; ++k)
      if (!std::isfinite(in->box[k])) throw std::runtime_error("the box is not finite (NaN or inf)");
}

extern "C" int dpmd_compute(dpmd_model* m, const dpmd_input* in, dpmd_output* out) {
  dpmd::set_error("");
  try {
    if (!m || !in || !out) throw std::runtime_error("null argument to dpmd_compute");
    if (in->size < offsetof(dpmd_input, mapping) || out->size < sizeof(dpmd_output))
      throw std::runtime_error("dpmd_input.size / dpmd_output.size not set: initialise them with "
                               "DPMD_INPUT_INIT / DPMD_OUTPUT_INIT (C API " + std::to_string(DPMD_C_API_VERSION) + ")");
    check_finite(in);
    if (widened_shell(m, in))
      compute_widened(m, in, out);
    else if (in->ilist)
      compute_listed(m, in, out);
    else
      compute_self(m, in, out);
    return 0;
  } catch (const std::exception& e) {
    dpmd::set_error(e.what());
    return 1;
  }
}
