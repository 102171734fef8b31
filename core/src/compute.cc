// deepmd_md core: one energy/force/virial evaluation. Type mapping, the conversion of the
// engine's neighbor list and the split of local atoms into chunks, written once for every
// engine; chunks run concurrently on the model's workers, one backend call per thread.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "internal.h"
#include "neighbor.h"

namespace {

using dpmd::Scratch;
constexpr int NEIGHMASK = 0x1FFFFFFF;

// Neighbor list of local atoms s0..s1-1 for the backend, indices mapped through remap (null:
// unchanged): padded rows [n, width] for raw models, per-type blocks for blocked ones.
void build_nlist(const dpmd_model* m, Scratch& s, const double* x, int s0, int s1, const int* remap,
                 dpmd::BackendInput& bi) {
  const int n = s1 - s0;
  auto to = [remap](int j) { return int64_t(remap ? remap[j] : j); };
  if (!m->info.blocked) {
    int width = 1;
    for (int i = s0; i < s1; ++i) width = std::max(width, m->row_count[i]);
    s.nlist.assign(size_t(n) * width, -1);
    for (int i = s0; i < s1; ++i) {
      int64_t* row = s.nlist.data() + size_t(i - s0) * width;
      const int* src = m->kept.data() + m->row_start[i];
      for (int k = 0; k < m->row_count[i]; ++k) row[k] = to(src[k]);
    }
    bi.nlist = s.nlist.data();
    bi.nnei = width;
    return;
  }
  const auto& sel = m->info.sel;
  const int nt = int(sel.size());
  // neighbors per (atom, type), then each block's width: the widest row, at most sel
  s.cnt.assign(size_t(n) * nt, 0);
  s.widths.assign(nt, 0);
  for (int i = s0; i < s1; ++i) {
    int64_t* c = s.cnt.data() + size_t(i - s0) * nt;
    const int* src = m->kept.data() + m->row_start[i];
    for (int k = 0; k < m->row_count[i]; ++k) c[m->atype[src[k]]]++;
    for (int t = 0; t < nt; ++t) s.widths[t] = std::max(s.widths[t], std::min(c[t], sel[t]));
  }
  std::vector<size_t> off(nt + 1, 0);
  for (int t = 0; t < nt; ++t) off[t + 1] = off[t] + size_t(n) * s.widths[t];
  s.nlist.assign(off[nt], -1);
  std::vector<int64_t> pos(nt);
  for (int i = s0; i < s1; ++i) {
    const int64_t* c = s.cnt.data() + size_t(i - s0) * nt;
    std::fill(pos.begin(), pos.end(), 0);
    const int* src = m->kept.data() + m->row_start[i];
    auto slot = [&](int t) { return s.nlist.data() + off[t] + size_t(i - s0) * s.widths[t] + pos[t]++; };
    for (int k = 0; k < m->row_count[i]; ++k) {
      const int t = int(m->atype[src[k]]);
      if (c[t] <= sel[t]) *slot(t) = to(src[k]);
    }
    for (int t = 0; t < nt; ++t) {
      if (c[t] <= sel[t]) continue;
      // more type-t neighbors than sel: keep the nearest, as the model's own selection does
      auto& near = s.near;
      near.clear();
      const double* xi = x + 3 * size_t(i);
      for (int k = 0; k < m->row_count[i]; ++k) {
        const int j = src[k];
        if (m->atype[j] != t) continue;
        const double* xj = x + 3 * size_t(j);
        const double dx = xj[0] - xi[0], dy = xj[1] - xi[1], dz = xj[2] - xi[2];
        near.emplace_back(dx * dx + dy * dy + dz * dz, j);
      }
      std::nth_element(near.begin(), near.begin() + sel[t], near.end());
      for (int64_t k = 0; k < sel[t]; ++k) *slot(t) = to(near[k].second);
    }
  }
  s.center_count.assign(nt, 0);
  for (int i = s0; i < s1; ++i) s.center_count[m->atype[i]]++;
  std::vector<int64_t> cpos(nt, 0);
  for (int t = 1; t < nt; ++t) cpos[t] = cpos[t - 1] + s.center_count[t - 1];
  s.center_idx.assign(n, 0);
  for (int i = s0; i < s1; ++i) s.center_idx[cpos[m->atype[i]]++] = to(i);
  bi.nlist = s.nlist.data();
  bi.nnei = 0;
  bi.ntypes = nt;
  bi.widths = s.widths.data();
  bi.center_idx = s.center_idx.data();
  bi.center_count = s.center_count.data();
}

// Mapped types of local + ghost atoms into m->atype.
void map_types(dpmd_model* m, const int* atype, int nall) {
  m->atype.resize(nall);
  const int ntm = int(m->type_map.size());
  const int nt = int(m->info.type_map.size());
  for (int i = 0; i < nall; ++i) {
    const int t = atype[i];
    if (m->has_type_map) {
      if (t < 0 || t >= ntm || m->type_map[t] < 0)
        throw std::runtime_error("atom " + std::to_string(i) + " has type " + std::to_string(t) +
                                 ", which is not mapped to any model type");
      m->atype[i] = m->type_map[t];
    } else {
      if (t < 0 || t >= nt)
        throw std::runtime_error("atom " + std::to_string(i) + " has type " + std::to_string(t) +
                                 ", out of the model's types 0.." + std::to_string(nt - 1));
      m->atype[i] = t;
    }
  }
}

// The core's own exchange in one domain: a ghost row is its owner's row (mapping).
int mapping_forward(void* ctx, double* rows, int ncol) {
  const auto* m = static_cast<const dpmd_model*>(ctx);
  const int64_t nall = int64_t(m->mapping.size());
  for (int64_t i = 0; i < nall; ++i) {
    const int64_t o = m->mapping[i];
    if (o != i) std::copy(rows + o * ncol, rows + (o + 1) * ncol, rows + i * ncol);
  }
  return 0;
}

int mapping_reverse(void* ctx, double* rows, int ncol) {
  const auto* m = static_cast<const dpmd_model*>(ctx);
  const int64_t nall = int64_t(m->mapping.size());
  for (int64_t i = 0; i < nall; ++i) {
    const int64_t o = m->mapping[i];
    if (o == i) continue;
    for (int c = 0; c < ncol; ++c) rows[o * ncol + c] += rows[i * ncol + c];
  }
  return 0;
}

// dpmd_input.mapping, checked, into m->mapping (cleared when not given).
void take_mapping(dpmd_model* m, const dpmd_input* in, int nloc, int nall) {
  m->mapping.clear();
  if (!in->mapping) return;
  m->mapping.resize(nall);
  for (int i = 0; i < nall; ++i) {
    const int o = in->mapping[i];
    if (o < 0 || o >= nloc || (i < nloc && o != i))
      throw std::runtime_error("mapping[" + std::to_string(i) + "] = " + std::to_string(o) +
                               (i < nloc ? " for a local atom (must be the atom itself)"
                                         : " is not a local atom (0.." + std::to_string(nloc - 1) + ")"));
    m->mapping[i] = o;
  }
}

// The exchange a message-passing model runs with: the engine's (across domains), else the
// core's over the mapping (one domain); null for other models. Models frozen before the
// exchange op take the mapping itself (BackendInput::mapping) and one domain only.
const dpmd_exchange* resolve_exchange(dpmd_model* m, const dpmd_input* in, int nloc, int nall) {
  const dpmd_exchange* ex =
      in->size >= offsetof(dpmd_input, exchange) + sizeof(in->exchange) ? in->exchange : nullptr;
  take_mapping(m, in, nloc, nall);
  if (!m->info.message_passing) return nullptr;
  if (m->mapping.empty() && !ex && nall == nloc) {  // no ghosts: every atom owns itself
    m->mapping.resize(nall);
    for (int i = 0; i < nall; ++i) m->mapping[i] = i;
  }
  if (ex && m->info.exchange_op) {
    if (ex->size < sizeof(dpmd_exchange) || !ex->forward || !ex->reverse)
      throw std::runtime_error("dpmd_input.exchange is incomplete: set size = sizeof(dpmd_exchange), "
                               "forward and reverse");
    if (nloc == 0)
      throw std::runtime_error("this domain has no local atoms; a message-passing model exchanges ghost "
                               "features collectively and needs at least one atom per domain (use fewer "
                               "MPI ranks or balance the decomposition)");
    return ex;
  }
  // (with ghosts and no mapping or usable exchange, entry.cc's widened_shell took the call)
  if (m->mapping.empty())
    throw std::runtime_error("this message-passing model was frozen without the ghost-exchange op and "
                             "runs in one domain only, with dpmd_input.mapping: freeze it again with this "
                             "deepmd_md to run it across MPI ranks");
  if (!m->info.exchange_op) return nullptr;
  m->own_exchange = dpmd_exchange{sizeof(dpmd_exchange), m, mapping_forward, mapping_reverse};
  return &m->own_exchange;
}

// Keep the engine's neighbors within rcut (its list includes the skin): m->kept, row_start/count.
void keep_neighbors(dpmd_model* m, const dpmd_input* in, int nloc, int nall) {
  const double rc2 = m->info.rcut * m->info.rcut;
  const double* x = in->coord;
  m->row_start.assign(nloc, 0);
  m->row_count.assign(nloc, 0);
  m->kept.clear();
  if (in->inum > 0 && (!in->ilist || !in->numneigh || !in->firstneigh))
    throw std::runtime_error("incomplete neighbor list");
  for (int ii = 0; ii < in->inum; ++ii) {
    const int i = in->ilist[ii];
    if (i < 0 || i >= nloc) throw std::runtime_error("neighbor list row for atom " + std::to_string(i) + " which is not local");
    const int* jl = in->firstneigh[ii];
    const int nj = in->numneigh[ii];
    const int start = int(m->kept.size());
    const double xi = x[3 * i], yi = x[3 * i + 1], zi = x[3 * i + 2];
    for (int jj = 0; jj < nj; ++jj) {
      const int j = jl[jj] & NEIGHMASK;
      if (j >= nall) throw std::runtime_error("neighbor index " + std::to_string(j) + " beyond local+ghost atoms");
      const double dx = x[3 * j] - xi, dy = x[3 * j + 1] - yi, dz = x[3 * j + 2] - zi;
      if (dx * dx + dy * dy + dz * dz < rc2 && j != i) m->kept.push_back(j);
    }
    m->row_start[i] = start;
    m->row_count[i] = int(m->kept.size()) - start;
  }
}

// One chunk (local atoms s0..s1-1) on worker w: it sees its own atoms first, then only the
// atoms its neighbor list touches (other local atoms included) as ghosts; its forces and
// virials add into force/atom_virial (nall rows), its energy and virial into s.
void run_chunk(dpmd_model* m, int w, const dpmd_input* in, const dpmd_output* out, int s0, int s1,
               dpmd::BackendInput bi, double* force, double* atom_virial, double& t_backend) {
  Scratch& s = m->scratch[w];
  const int n = s1 - s0;
  auto& ids = s.ids;
  ids.clear();
  for (int i = s0; i < s1; ++i) {
    s.remap[i] = int(ids.size());
    ids.push_back(i);
  }
  for (int i = s0; i < s1; ++i) {
    const int* src = m->kept.data() + m->row_start[i];
    for (int k = 0; k < m->row_count[i]; ++k)
      if (s.remap[src[k]] < 0) {
        s.remap[src[k]] = int(ids.size());
        ids.push_back(src[k]);
      }
  }
  const int nall_c = int(ids.size());
  s.c_coord.resize(size_t(nall_c) * 3);
  s.c_atype.resize(nall_c);
  for (int k = 0; k < nall_c; ++k) {
    const int j = ids[k];
    std::copy(in->coord + 3 * size_t(j), in->coord + 3 * size_t(j) + 3, s.c_coord.data() + 3 * size_t(k));
    s.c_atype[k] = m->atype[j];
  }
  build_nlist(m, s, in->coord, s0, s1, s.remap.data(), bi);
  s.c_force.resize(size_t(nall_c) * 3);
  if (atom_virial) s.c_av.resize(size_t(nall_c) * 9);
  bi.nloc = n;
  bi.nall = nall_c;
  bi.coord = s.c_coord.data();
  bi.atype = s.c_atype.data();
  bi.aparam = bi.dim_aparam > 0 ? in->aparam + size_t(s0) * bi.dim_aparam : nullptr;
  bi.mapping = nullptr;  // chunks hold no ghost's owner (message-passing models are never chunked)
  dpmd::BackendOutput bo;
  bo.force = s.c_force.data();
  bo.atom_energy = out->atom_energy ? out->atom_energy + s0 : nullptr;
  bo.atom_virial = atom_virial ? s.c_av.data() : nullptr;
  const auto tb = std::chrono::steady_clock::now();
  m->backends[w]->compute(bi, bo);
  t_backend += std::chrono::duration<double>(std::chrono::steady_clock::now() - tb).count();
  s.energy += bo.energy;
  for (int c = 0; c < 9; ++c) s.virial[c] += bo.virial[c];
  for (int k = 0; k < nall_c; ++k) {
    const int j = ids[k];
    for (int d = 0; d < 3; ++d) force[3 * j + d] += s.c_force[3 * k + d];
    if (atom_virial)
      for (int c = 0; c < 9; ++c) atom_virial[9 * size_t(j) + c] += s.c_av[9 * size_t(k) + c];
    s.remap[j] = -1;
  }
}

}  // namespace

namespace dpmd {

// dpmd_compute with the engine's neighbor list (or the one compute_self built).
void compute_listed(dpmd_model* m, const dpmd_input* in, dpmd_output* out) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const int nloc = in->nloc, nall = in->nloc + in->nghost;
    if (nloc < 0 || in->nghost < 0) throw std::runtime_error("negative atom count");
    if (!out->force) throw std::runtime_error("dpmd_output.force must be provided");
    if (nall > 0 && (!in->coord || !in->atype)) throw std::runtime_error("coord and atype must be provided");
    const dpmd::ModelInfo& info = m->info;
    if (info.dim_fparam > 0 && !in->fparam)
      throw std::runtime_error("the model needs " + std::to_string(info.dim_fparam) + " frame parameters (fparam)");
    if (info.dim_aparam > 0 && !in->aparam)
      throw std::runtime_error("the model needs " + std::to_string(info.dim_aparam) + " atomic parameters per atom (aparam)");
    map_types(m, in->atype, nall);
    keep_neighbors(m, in, nloc, nall);

    std::fill(out->force, out->force + 3 * size_t(nall), 0.0);
    if (out->atom_virial) std::fill(out->atom_virial, out->atom_virial + 9 * size_t(nall), 0.0);
    out->energy = 0.0;
    std::fill(out->virial, out->virial + 9, 0.0);
    const bool engine_exchange = in->size >= offsetof(dpmd_input, exchange) + sizeof(in->exchange) && in->exchange;
    if (nloc == 0 && !(info.message_passing && engine_exchange)) return;
    const dpmd_exchange* exchange = resolve_exchange(m, in, nloc, nall);

    dpmd::BackendInput bi;
    bi.box = in->box;
    bi.fparam = info.dim_fparam > 0 ? in->fparam : nullptr;
    bi.dim_fparam = info.dim_fparam;
    bi.dim_aparam = info.dim_aparam;
    bi.atomic_virial = out->atom_virial != nullptr;
    double t_backend = 0.0;

    // message-passing models: one call over all atoms (a ghost's features are its owner's,
    // and the owner may sit in any chunk): no chunking
    const int chunk = info.message_passing ? 0 : m->chunk;
    const int nw = chunk > 0 ? m->threads : 1;
    int nchunks = chunk > 0 ? (nloc + chunk - 1) / chunk : 1;
    // every worker gets the same number of chunks, of (nearly) equal size
    if (nw > 1) nchunks = std::min(nloc, (std::max(nchunks, nw) + nw - 1) / nw * nw);
    if (nchunks <= 1) {
      // one call over all local + ghost atoms
      Scratch& s = m->scratch[0];
      build_nlist(m, s, in->coord, 0, nloc, nullptr, bi);
      bi.nloc = nloc;
      bi.nall = nall;
      bi.coord = in->coord;
      bi.atype = m->atype.data();
      bi.aparam = info.dim_aparam > 0 ? in->aparam : nullptr;
      bi.mapping = m->mapping.empty() ? nullptr : m->mapping.data();
      bi.exchange = exchange;
      if (info.weighted && (exchange || !m->weight.empty())) {  // atom_weight: ones unless widened
        if (m->weight.empty()) m->ones.assign(nloc, 1.0);
        bi.atom_weight = m->weight.empty() ? m->ones.data() : m->weight.data();
      }
      dpmd::BackendOutput bo;
      bo.force = out->force;
      bo.atom_energy = out->atom_energy;
      bo.atom_virial = out->atom_virial;
      const auto tb = clock::now();
      m->backends[0]->compute(bi, bo);
      t_backend += std::chrono::duration<double>(clock::now() - tb).count();
      out->energy = bo.energy;
      std::copy(bo.virial, bo.virial + 9, out->virial);
    } else {
      std::vector<double> t_worker(nw, 0.0);
      auto work = [&](int w) {
        Scratch& s = m->scratch[w];
        s.energy = 0.0;
        std::fill(s.virial, s.virial + 9, 0.0);
        s.remap.assign(nall, -1);
        double* force = out->force;
        double* av = out->atom_virial;
        if (w > 0) {
          s.force.assign(3 * size_t(nall), 0.0);
          force = s.force.data();
          if (av) {
            s.atom_virial.assign(9 * size_t(nall), 0.0);
            av = s.atom_virial.data();
          }
        }
        // chunks w, w + nw, ...: a fixed split, so the sums do not depend on timing
        for (int c = w; c < nchunks; c += nw)
          run_chunk(m, w, in, out, int(int64_t(c) * nloc / nchunks), int(int64_t(c + 1) * nloc / nchunks), bi, force,
                    av, t_worker[w]);
      };
      if (nw == 1) {
        work(0);
      } else {
        // each worker's backend calls run on one thread (of every OpenMP runtime in the process)
        auto one_thread = [&](int w) {
          if (m->set_threads) m->set_threads(1, 0);
          work(w);
        };
        try {
          m->pool->run(one_thread);
        } catch (...) {
          if (m->set_threads) m->set_threads(m->threads, 0);
          throw;
        }
        if (m->set_threads) m->set_threads(m->threads, 0);
      }
      for (int w = 0; w < nw; ++w) {
        const Scratch& s = m->scratch[w];
        out->energy += s.energy;
        for (int c = 0; c < 9; ++c) out->virial[c] += s.virial[c];
        if (w == 0) continue;
        for (size_t k = 0; k < 3 * size_t(nall); ++k) out->force[k] += s.force[k];
        if (out->atom_virial)
          for (size_t k = 0; k < 9 * size_t(nall); ++k) out->atom_virial[k] += s.atom_virial[k];
      }
      t_backend = *std::max_element(t_worker.begin(), t_worker.end());
    }
    if (m->profile) {
      m->ncalls++;
      const double total = std::chrono::duration<double>(clock::now() - t0).count();
      m->t_prep += total - t_backend;
      m->t_backend += t_backend;
    }
}

}  // namespace dpmd
