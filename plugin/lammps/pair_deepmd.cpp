// pair_style deepmd (deepmd_md).  Written from the LAMMPS Pair API docs.
#include "pair_deepmd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

using namespace LAMMPS_NS;

namespace {
bool is_keyword(const char *s)
{
  static const char *kw[] = {"out_file", "out_freq", "atomic", "relative", "relative_v", "fparam", "aparam"};
  for (const char *k : kw)
    if (strcmp(s, k) == 0) return true;
  return false;
}
}    // namespace

PairDeepMD::PairDeepMD(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;
  centroidstressflag = CENTROID_AVAIL;
  unit_convert_flag = 0;
  comm_reverse = comm_reverse_off = 12;
}

PairDeepMD::~PairDeepMD()
{
  free_models();
  if (devi_fp) fclose(devi_fp);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairDeepMD::free_models()
{
  for (auto *m : models) dpmd_model_free(m);
  models.clear();
}

/* pair_style deepmd m1.pth [m2.pth ...] [out_file F] [out_freq N] [atomic]
                     [relative X] [relative_v X] [fparam v ...] [aparam v ...] */
void PairDeepMD::settings(int narg, char **arg)
{
  if (narg < 1) error->all(FLERR, "deepmd: pair_style deepmd needs at least one model file");
  model_files.clear();
  fparam.clear();
  aparam.clear();
  int iarg = 0;
  while (iarg < narg && !is_keyword(arg[iarg])) model_files.emplace_back(arg[iarg++]);
  if (model_files.empty()) error->all(FLERR, "deepmd: pair_style deepmd needs at least one model file");
  while (iarg < narg) {
    std::string k = arg[iarg];
    if (k == "out_file") {
      if (iarg + 1 >= narg) error->all(FLERR, "deepmd: out_file needs a file name");
      out_file = arg[iarg + 1];
      iarg += 2;
    } else if (k == "out_freq") {
      if (iarg + 1 >= narg) error->all(FLERR, "deepmd: out_freq needs a value");
      out_freq = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (out_freq < 1) error->all(FLERR, "deepmd: out_freq must be positive");
      iarg += 2;
    } else if (k == "atomic") {
      out_atomic = true;
      iarg += 1;
    } else if (k == "relative" || k == "relative_v") {
      if (iarg + 1 >= narg) error->all(FLERR, "deepmd: {} needs a value", k);
      double v = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (v < 0.0) error->all(FLERR, "deepmd: {} must be >= 0", k);
      (k == "relative" ? relative_f : relative_v) = v;
      iarg += 2;
    } else if (k == "fparam" || k == "aparam") {
      auto &dst = (k == "fparam") ? fparam : aparam;
      ++iarg;
      while (iarg < narg && !is_keyword(arg[iarg]))
        dst.push_back(utils::numeric(FLERR, arg[iarg++], false, lmp));
      if (dst.empty()) error->all(FLERR, "deepmd: {} needs values", k);
    } else {
      error->all(FLERR, "deepmd: unknown pair_style deepmd keyword {}", k);
    }
  }
  load_models();
}

void PairDeepMD::load_models()
{
  free_models();
  rcut_max = ghost_cut_max = 0.0;
  message_passing = false;
  use_exchange = true;
  int width = 0;
  for (auto &fn : model_files) {
    dpmd_model *m = dpmd_model_load(fn.c_str());
    if (!m) error->all(FLERR, "deepmd: {}", dpmd_last_error());
    models.push_back(m);
    rcut_max = std::max(rcut_max, dpmd_model_rcut(m));
    ghost_cut_max = std::max(ghost_cut_max, dpmd_model_ghost_cutoff(m));
    if (dpmd_model_message_passing(m)) {
      message_passing = true;
      if (!dpmd_model_supports_exchange(m)) use_exchange = false;
      width = std::max(width, dpmd_model_exchange_width(m));
    }
    int nf = dpmd_model_dim_fparam(m), na = dpmd_model_dim_aparam(m);
    if (int(fparam.size()) != nf)
      error->all(FLERR, "deepmd: model {} needs {} frame parameters (pair_style ... fparam v1 .. v{}), {} given", fn,
                 nf, nf, fparam.size());
    if (int(aparam.size()) != na)
      error->all(FLERR, "deepmd: model {} needs {} atomic parameters (pair_style ... aparam v1 .. v{}), {} given",
                 fn, na, na, aparam.size());
  }
  const int nm = int(models.size());
  use_exchange = use_exchange && message_passing;
  // LAMMPS sizes its buffers from these at comm->init; wider rows go in several passes
  // (models with the exchange op use it even beside one without: width counts only them)
  comm_forward = std::min(width, kMaxCommCols);
  comm_reverse = comm_reverse_off = std::max({12, 3 * nm, comm_forward});
  if (comm->me == 0) {
    for (int k = 0; k < nm; ++k) {
      std::string tm;
      for (int t = 0; t < dpmd_model_ntypes(models[k]); ++t) tm += std::string(t ? " " : "") + dpmd_model_type_name(models[k], t);
      utils::logmesg(lmp, "deepmd: model {} ({}, {}): type_map [{}], rcut {} A\n", model_files[k],
                     dpmd_model_backend(models[k]), dpmd_model_precision(models[k]), tm, dpmd_model_rcut(models[k]));
    }
    if (nm > 1)
      utils::logmesg(lmp, "deepmd: {} models, model deviation every {} steps to {}{}\n", nm, out_freq, out_file,
                     out_atomic ? " (per atom)" : "");
  }
  coeff_set = false;
}

/* pair_coeff * * [element per LAMMPS type | NULL] */
void PairDeepMD::coeff(int narg, char **arg)
{
  if (models.empty()) error->all(FLERR, "deepmd: pair_coeff before pair_style deepmd");
  if (narg < 2 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "deepmd: use pair_coeff * * [one element name per LAMMPS atom type]");
  const int ntypes = atom->ntypes;
  if (!allocated) {
    allocated = 1;
    memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
    memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
  }
  std::string tm;
  for (int t = 0; t < dpmd_model_ntypes(models[0]); ++t) tm += std::string(t ? " " : "") + dpmd_model_type_name(models[0], t);

  type_names.assign(ntypes + 1, "");
  int nnames = narg - 2;
  if (nnames == 0) {
    for (int t = 1; t <= ntypes; ++t) {
      const char *nm = dpmd_model_type_name(models[0], t - 1);
      type_names[t] = nm ? nm : "NULL";
    }
  } else if (nnames != ntypes) {
    error->all(FLERR,
               "deepmd: pair_coeff * * needs one element name per LAMMPS atom type: {} types but {} names "
               "given (model type_map: [{}])",
               ntypes, nnames, tm);
  } else {
    for (int t = 1; t <= ntypes; ++t) type_names[t] = arg[t + 1];
  }
  for (size_t k = 0; k < models.size(); ++k) {
    std::vector<int> map(ntypes + 1, -1);
    for (int t = 1; t <= ntypes; ++t) {
      if (type_names[t] == "NULL") continue;
      int idx = dpmd_model_type_index(models[k], type_names[t].c_str());
      if (idx < 0) {
        std::string tmk;
        for (int u = 0; u < dpmd_model_ntypes(models[k]); ++u) tmk += std::string(u ? " " : "") + dpmd_model_type_name(models[k], u);
        error->all(FLERR, "deepmd: element {} (LAMMPS type {}) is not in the type_map [{}] of model {}", type_names[t], t,
                   tmk, model_files[k]);
      }
      map[t] = idx;
    }
    if (dpmd_model_set_type_map(models[k], ntypes + 1, map.data())) error->all(FLERR, "deepmd: {}", dpmd_last_error());
    if (k == 0) type_map = map;
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
  coeff_set = true;
}

void PairDeepMD::init_style()
{
  if (!coeff_set) error->all(FLERR, "deepmd: pair_coeff * * ... must follow pair_style deepmd");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "deepmd: pair_style deepmd needs `units metal` (got units {})", update->unit_style);
  neighbor->add_request(this, NeighConst::REQ_FULL);

  // atoms whose LAMMPS type pair_coeff left unmapped
  const int ntypes = atom->ntypes;
  std::vector<bigint> cnt(ntypes + 1, 0), all(ntypes + 1, 0);
  for (int i = 0; i < atom->nlocal; ++i) cnt[atom->type[i]]++;
  MPI_Allreduce(cnt.data(), all.data(), ntypes + 1, MPI_LMP_BIGINT, MPI_SUM, world);
  for (int t = 1; t <= ntypes; ++t)
    if (type_map[t] < 0 && all[t] > 0)
      error->all(FLERR,
                 "deepmd: {} atoms have LAMMPS type {}, which pair_coeff maps to no model type ({}); "
                 "name its element in pair_coeff * *",
                 all[t], t, type_names[t].empty() ? "NULL" : type_names[t]);

  // message passing: between layers ghosts take their owners' features through LAMMPS'
  // forward communication (any decomposition). Models without the exchange op (a JAX
  // .savedmodel, files frozen before the op) need each ghost's owner among this rank's atoms on
  // one rank, and on several ranks ghosts out to the receptive field, which the core evaluates
  // as atoms of weight 0 (the widened ghost shell, docs/core_contract.md)
  widened = message_passing && !use_exchange && comm->nprocs > 1;
  if (message_passing && !use_exchange && !widened && !atom->tag_enable)
    error->all(FLERR, "deepmd: a message-passing model needs atom IDs to find each ghost's owner (atom_modify id yes)");
  if (widened) {
    double field = 0.0;
    std::string which;
    for (size_t k = 0; k < models.size(); ++k) {
      if (!dpmd_model_message_passing(models[k]) || dpmd_model_supports_exchange(models[k])) continue;
      if (!dpmd_model_supports_widened_shell(models[k]))
        error->all(FLERR,
                   "deepmd: {} is a message-passing model frozen without the ghost-exchange op (and without "
                   "atom_weight) and runs on one MPI rank only; freeze it again with this deepmd_md (dpmd freeze) "
                   "to run it on several ranks",
                   model_files[k]);
      if (dpmd_model_receptive_field(models[k]) > field) which = model_files[k];
      field = std::max(field, dpmd_model_receptive_field(models[k]));
    }
    // ghosts reach the comm cutoff minus the skin (atoms move up to skin/2 between rebuilds)
    const double need = field + neighbor->skin;
    const double have = std::max(comm->cutghostuser, rcut_max + neighbor->skin);
    if (have < need && comm->mode != Comm::SINGLE)
      error->all(FLERR,
                 "deepmd: {} has no ghost-exchange op: on several MPI ranks its ghosts must reach its receptive "
                 "field ({:.4g} A) plus the skin; add `comm_modify mode single cutoff {:.4g}`",
                 which, field, need);
    if (have < need) comm->cutghostuser = need;
    if (!widened_noted && comm->me == 0)
      utils::logmesg(lmp,
                     "deepmd: {} has no ghost-exchange op: on {} MPI ranks every atom within its receptive field "
                     "({:.4g} A) is a ghost, evaluated and weighted 0; ghost cutoff {} {:.4g} A (receptive field "
                     "+ skin, comm_modify cutoff)\n",
                     which, comm->nprocs, field, have < need ? "set to" : "is", std::max(have, need));
    widened_noted = true;
  }

  // ghost atoms must reach as far as the model looks
  double have = std::max(rcut_max + neighbor->skin, comm->cutghostuser);
  if (ghost_cut_max > have + 1e-10)
    error->all(FLERR,
               "deepmd: the model needs ghost atoms out to {:.4g} A but the ghost cutoff is {:.4g} A; add "
               "`comm_modify cutoff {:.4g}` to the input",
               ghost_cut_max, have, ghost_cut_max + neighbor->skin);

  if (models.size() > 1 && comm->me == 0 && !devi_fp) {
    devi_fp = fopen(out_file.c_str(), "w");
    if (!devi_fp) error->one(FLERR, "deepmd: cannot open model deviation file {}: {}", out_file, utils::getsyserror());
    fprintf(devi_fp, "%s", "#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f         min_devi_f         avg_devi_f");
    if (out_atomic) fprintf(devi_fp, "%s", "  devi_f (per atom, by atom ID)");
    fprintf(devi_fp, "\n");
    fflush(devi_fp);
  }
}

double PairDeepMD::init_one(int, int)
{
  return rcut_max;
}

void PairDeepMD::compute_error(int k)
{
  error->one(FLERR, "deepmd: model {}: {}", model_files[k], dpmd_last_error());
}

void PairDeepMD::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal, nghost = atom->nghost, nall = nlocal + nghost;
  const bool newton = force->newton_pair != 0;
  const int nm = int(models.size());
  const bigint step = update->ntimestep;
  const bool devi = nm > 1 && (step % out_freq == 0) && step != last_devi_step;
  const int neval = devi ? nm : 1;
  const bool want_av = vflag_atom || cvflag_atom;

  fbuf.resize(size_t(neval) * nall * 3 + 3);
  ebuf.resize(size_t(nlocal) + 1);
  if (want_av) vbuf.resize(size_t(nall) * 9 + 9);
  const int na = int(aparam.size());
  if (na) {
    aparam_buf.resize(size_t(nlocal) * na + 1);
    for (int i = 0; i < nlocal; ++i) std::copy(aparam.begin(), aparam.end(), aparam_buf.begin() + size_t(i) * na);
  }

  dpmd_input in = DPMD_INPUT_INIT;
  in.nloc = nlocal;
  in.nghost = nghost;
  in.coord = nall ? &atom->x[0][0] : nullptr;
  in.atype = atom->type;
  in.inum = list->inum;
  in.ilist = list->ilist;
  in.numneigh = list->numneigh;
  in.firstneigh = list->firstneigh;
  in.box = nullptr;
  in.fparam = fparam.empty() ? nullptr : fparam.data();
  in.aparam = na ? aparam_buf.data() : nullptr;
  in.mapping = nullptr;
  // the core picks what serves each model: this exchange (models with the op), the owners (one
  // rank), or the widened ghost shell (several ranks, ghosts out to the receptive field)
  in.exchange = message_passing ? &exchange : nullptr;
  if (message_passing && !use_exchange && !widened) {
    build_owner(nlocal, nall);
    in.mapping = owner.data();
  }
  // how far this rank's ghosts surely reach: the comm cutoff less the skin
  in.ghost_cutoff = std::max(comm->cutghostuser, neighbor->cutneighmax) - neighbor->skin;

  std::vector<double> virials(size_t(neval) * 9);
  double energy0 = 0.0;
  for (int k = 0; k < neval; ++k) {
    dpmd_output out = DPMD_OUTPUT_INIT;
    out.force = fbuf.data() + size_t(k) * nall * 3;
    out.atom_energy = (k == 0 && eflag_atom) ? ebuf.data() : nullptr;
    out.atom_virial = (k == 0 && want_av) ? vbuf.data() : nullptr;
    if (dpmd_compute(models[k], &in, &out)) compute_error(k);
    std::copy(out.virial, out.virial + 9, virials.begin() + 9 * k);
    if (k == 0) energy0 = out.energy;
  }

  const double *v = virials.data();
  if (eflag_global) eng_vdwl += energy0;
  if (eflag_atom)
    for (int i = 0; i < nlocal; ++i) eatom[i] += ebuf[i];
  if (vflag_global) {
    virial[0] += v[0];
    virial[1] += v[4];
    virial[2] += v[8];
    virial[3] += 0.5 * (v[1] + v[3]);
    virial[4] += 0.5 * (v[2] + v[6]);
    virial[5] += 0.5 * (v[5] + v[7]);
  }

  double **f = atom->f;
  const double *f0 = fbuf.data();
  int nfold = nall;    // rows whose forces/virials go into LAMMPS arrays
  const double *av = want_av ? vbuf.data() : nullptr;
  if (!newton) {
    // LAMMPS does not reverse-communicate forces with newton_pair off: fold
    // ghost forces (and per-atom virials) onto their owners ourselves.
    const int stride = 3 + (want_av ? 9 : 0);
    rcbuf.assign(size_t(nall) * stride, 0.0);
    for (int i = 0; i < nall; ++i) {
      double *r = rcbuf.data() + size_t(i) * stride;
      r[0] = f0[3 * i];
      r[1] = f0[3 * i + 1];
      r[2] = f0[3 * i + 2];
      if (want_av) std::copy(av + 9 * size_t(i), av + 9 * size_t(i) + 9, r + 3);
    }
    fold_ghosts(stride);
    for (int i = 0; i < nlocal; ++i) {
      const double *r = rcbuf.data() + size_t(i) * stride;
      f[i][0] += r[0];
      f[i][1] += r[1];
      f[i][2] += r[2];
      if (want_av) std::copy(r + 3, r + 12, vbuf.data() + 9 * size_t(i));
    }
    nfold = nlocal;
  } else {
    for (int i = 0; i < nall; ++i) {
      f[i][0] += f0[3 * i];
      f[i][1] += f0[3 * i + 1];
      f[i][2] += f0[3 * i + 2];
    }
  }
  if (want_av) {
    for (int i = 0; i < nfold; ++i) {
      const double *a = vbuf.data() + 9 * size_t(i);
      if (vflag_atom) {
        vatom[i][0] += a[0];
        vatom[i][1] += a[4];
        vatom[i][2] += a[8];
        vatom[i][3] += 0.5 * (a[1] + a[3]);
        vatom[i][4] += 0.5 * (a[2] + a[6]);
        vatom[i][5] += 0.5 * (a[5] + a[7]);
      }
      if (cvflag_atom) {
        cvatom[i][0] += a[0];
        cvatom[i][1] += a[4];
        cvatom[i][2] += a[8];
        cvatom[i][3] += a[1];
        cvatom[i][4] += a[2];
        cvatom[i][5] += a[5];
        cvatom[i][6] += a[3];
        cvatom[i][7] += a[6];
        cvatom[i][8] += a[7];
      }
    }
  }

  if (devi) model_deviation(nlocal, nall, virials, step);
}

double PairDeepMD::memory_usage()
{
  return double(fbuf.capacity() + ebuf.capacity() + vbuf.capacity() + rcbuf.capacity()) * sizeof(double);
}
