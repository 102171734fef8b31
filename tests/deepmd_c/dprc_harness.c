/* The call sequence of a DPRc (-DDPRC) AMBER sander, written against DeePMD-kit's C API
 * (deepmd/c_api.h) and linked with deepmd_md's libdeepmd_c.so: several models for the model
 * deviation, a QM region given as local atoms with the MM atoms and periodic images around it
 * as ghosts and a neighbor list built here (as sander builds it), ghost forces added back onto
 * the atoms they copy, then the deviation of the models' forces. Also: the other compute
 * forms (float, no list, several frames, virtual atoms) and the error paths.
 *
 * usage: dprc_harness INPUT  (INPUT written by tests/deepmd_c/test_deepmd_c.py:
 *   "models M" + M paths, "natoms N", "box" + 9 numbers, N lines "x y z type",
 *   "qm K" + K atom indices, "rcut R skin S")
 * Output: lines "name index count values..." and "msg name text" (parsed by the test). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deepmd/c_api.h"

typedef struct {
  int nloc, nall;
  double* x;      /* [nall*3] local atoms first, then ghosts */
  int* type;      /* [nall] */
  int* owner;     /* [nall] the system atom each one copies */
  int* shift;     /* [nall*3] the periodic image (cell units) */
  int* ilist;     /* [nloc] */
  int* numneigh;  /* [nloc] */
  int** firstneigh;
} Region;

static void die(const char* what) {
  fprintf(stderr, "harness: %s\n", what);
  exit(3);
}

static void* xmalloc(size_t n) {
  void* p = calloc(n ? n : 1, 1);
  if (!p) die("out of memory");
  return p;
}

static void print_vec(const char* name, int idx, int n, const double* v) {
  printf("%s %d %d", name, idx, n);
  for (int i = 0; i < n; ++i) printf(" %.17g", v[i]);
  printf("\n");
}

static void print_fvec(const char* name, int idx, int n, const float* v) {
  printf("%s %d %d", name, idx, n);
  for (int i = 0; i < n; ++i) printf(" %.9g", (double)v[i]);
  printf("\n");
}

/* CheckOK's message (freed here); prints it under `name` when not empty; 1 if it was. */
static int report(const char* name, const char* msg) {
  int bad = msg && msg[0];
  if (bad) printf("msg %s %s\n", name, msg);
  DP_DeleteChar(msg);
  return bad;
}

static double dist2(const double* a, const double* b) {
  double d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
  return d0 * d0 + d1 * d1 + d2 * d2;
}

/* The atoms `sel` of a periodic system as local atoms; every other atom and periodic image
 * within rc of one of them as a ghost; each local atom's neighbors within rc. */
static void build_region(int n, const double* x, const int* type, const double* box, int nsel, const int* sel,
                         double rc, Region* r) {
  int* is_sel = xmalloc(sizeof(int) * n);
  for (int k = 0; k < nsel; ++k) is_sel[sel[k]] = 1;
  const double* a = box;
  const double* b = box + 3;
  const double* c = box + 6;
  double bc[3] = {b[1] * c[2] - b[2] * c[1], b[2] * c[0] - b[0] * c[2], b[0] * c[1] - b[1] * c[0]};
  double ca[3] = {c[1] * a[2] - c[2] * a[1], c[2] * a[0] - c[0] * a[2], c[0] * a[1] - c[1] * a[0]};
  double ab[3] = {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
  double vol = fabs(a[0] * bc[0] + a[1] * bc[1] + a[2] * bc[2]);
  int reach[3] = {(int)ceil(rc / (vol / sqrt(bc[0] * bc[0] + bc[1] * bc[1] + bc[2] * bc[2]))),
                  (int)ceil(rc / (vol / sqrt(ca[0] * ca[0] + ca[1] * ca[1] + ca[2] * ca[2]))),
                  (int)ceil(rc / (vol / sqrt(ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2])))};
  int cap = nsel + n * (2 * reach[0] + 1) * (2 * reach[1] + 1) * (2 * reach[2] + 1);
  r->x = xmalloc(sizeof(double) * 3 * cap);
  r->type = xmalloc(sizeof(int) * cap);
  r->owner = xmalloc(sizeof(int) * cap);
  r->shift = xmalloc(sizeof(int) * 3 * cap);
  r->nloc = nsel;
  int m = 0;
  for (int k = 0; k < nsel; ++k, ++m) {
    memcpy(r->x + 3 * m, x + 3 * sel[k], sizeof(double) * 3);
    r->type[m] = type[sel[k]];
    r->owner[m] = sel[k];
  }
  for (int i0 = -reach[0]; i0 <= reach[0]; ++i0)
    for (int i1 = -reach[1]; i1 <= reach[1]; ++i1)
      for (int i2 = -reach[2]; i2 <= reach[2]; ++i2)
        for (int j = 0; j < n; ++j) {
          if (i0 == 0 && i1 == 0 && i2 == 0 && is_sel[j]) continue;
          double p[3];
          for (int d = 0; d < 3; ++d) p[d] = x[3 * j + d] + i0 * a[d] + i1 * b[d] + i2 * c[d];
          int near = 0;
          for (int k = 0; k < nsel && !near; ++k) near = dist2(p, r->x + 3 * k) < rc * rc;
          if (!near) continue;
          memcpy(r->x + 3 * m, p, sizeof(p));
          r->type[m] = type[j];
          r->owner[m] = j;
          r->shift[3 * m] = i0, r->shift[3 * m + 1] = i1, r->shift[3 * m + 2] = i2;
          ++m;
        }
  r->nall = m;
  r->ilist = xmalloc(sizeof(int) * nsel);
  r->numneigh = xmalloc(sizeof(int) * nsel);
  r->firstneigh = xmalloc(sizeof(int*) * nsel);
  for (int i = 0; i < nsel; ++i) {
    r->ilist[i] = i;
    r->firstneigh[i] = xmalloc(sizeof(int) * m);
    int cnt = 0;
    for (int j = m - 1; j >= 0; --j)  /* any order: the library must not care */
      if (j != i && dist2(r->x + 3 * i, r->x + 3 * j) < rc * rc) r->firstneigh[i][cnt++] = j;
    r->numneigh[i] = cnt;
  }
  free(is_sel);
}

/* Region coordinates for new system coordinates, same atoms and images (an MD step without a
 * neighbor-list rebuild). */
static void move_region(Region* r, const double* x, const double* box) {
  for (int m = 0; m < r->nall; ++m)
    for (int d = 0; d < 3; ++d)
      r->x[3 * m + d] = x[3 * r->owner[m] + d] + r->shift[3 * m] * box[d] + r->shift[3 * m + 1] * box[3 + d] +
                        r->shift[3 * m + 2] * box[6 + d];
}

/* Ghost rows added onto the system atoms they copy (sander's reduction): out[n*3]. */
static void fold(const Region* r, int n, const double* f, double* out) {
  memset(out, 0, sizeof(double) * 3 * n);
  for (int m = 0; m < r->nall; ++m)
    for (int d = 0; d < 3; ++d) out[3 * r->owner[m] + d] += f[3 * m + d];
}

int main(int argc, char** argv) {
  if (argc != 2) die("usage: dprc_harness INPUT");
  FILE* in = fopen(argv[1], "r");
  if (!in) die("cannot open input");
  int nm, n, nqm;
  char key[64];
  if (fscanf(in, "%63s %d", key, &nm) != 2) die("bad input (models)");
  char** paths = xmalloc(sizeof(char*) * nm);
  for (int i = 0; i < nm; ++i) {
    paths[i] = xmalloc(4096);
    if (fscanf(in, "%4095s", paths[i]) != 1) die("bad input (model path)");
  }
  if (fscanf(in, "%63s %d %63s", key, &n, key) != 3) die("bad input (natoms)");
  double box[9];
  for (int i = 0; i < 9; ++i)
    if (fscanf(in, "%lf", &box[i]) != 1) die("bad input (box)");
  double* x = xmalloc(sizeof(double) * 3 * n);
  int* type = xmalloc(sizeof(int) * n);
  for (int i = 0; i < n; ++i)
    if (fscanf(in, "%lf %lf %lf %d", &x[3 * i], &x[3 * i + 1], &x[3 * i + 2], &type[i]) != 4) die("bad input (atom)");
  if (fscanf(in, "%63s %d", key, &nqm) != 2) die("bad input (qm)");
  int* qm = xmalloc(sizeof(int) * nqm);
  for (int i = 0; i < nqm; ++i)
    if (fscanf(in, "%d", &qm[i]) != 1) die("bad input (qm index)");
  double rcut, skin;
  if (fscanf(in, "%63s %lf %63s %lf", key, &rcut, key, &skin) != 4) die("bad input (rcut)");
  fclose(in);

  /* --- start-up: the models, their cutoff and types ------------------------------------------ */
  DP_DeepPotModelDevi* devi = DP_NewDeepPotModelDevi((const char**)paths, nm);
  if (report("devi_new", DP_DeepPotModelDeviCheckOK(devi))) return 2;
  double cutoff = DP_DeepPotModelDeviGetCutoff(devi);
  double ntypes = DP_DeepPotModelDeviGetNumbTypes(devi);
  double dims[2] = {DP_DeepPotModelDeviGetDimFParam(devi), DP_DeepPotModelDeviGetDimAParam(devi)};
  print_vec("cutoff", 0, 1, &cutoff);
  print_vec("ntypes", 0, 1, &ntypes);
  print_vec("dims", 0, 2, dims);
  DP_DeepPot* single0 = DP_NewDeepPot(paths[0]);
  if (report("single_new", DP_DeepPotCheckOK(single0))) return 2;
  const char* tmap = DP_DeepPotGetTypeMap(single0);
  printf("msg typemap %s\n", tmap);
  DP_DeleteChar(tmap);

  /* --- a DPRc step: QM atoms local, MM atoms and images as ghosts, the engine's list ---------- */
  Region r;
  build_region(n, x, type, box, nqm, qm, cutoff + skin, &r);
  const int nall = r.nall, nghost = r.nall - r.nloc;
  double* e = xmalloc(sizeof(double) * nm);
  double* f = xmalloc(sizeof(double) * nm * nall * 3);
  double* v = xmalloc(sizeof(double) * nm * 9);
  double* ae = xmalloc(sizeof(double) * nm * nall);
  double* av = xmalloc(sizeof(double) * nm * nall * 9);
  double* fs = xmalloc(sizeof(double) * 3 * n);
  double nn[2] = {r.nloc, nghost};
  print_vec("region", 0, 2, nn);
  DP_Nlist* nl = DP_NewNlist(r.nloc, r.ilist, r.numneigh, r.firstneigh);
  DP_DeepPotModelDeviComputeNList(devi, nall, r.x, r.type, box, nghost, nl, 0, e, f, v, ae, av);
  if (report("devi_compute", DP_DeepPotModelDeviCheckOK(devi))) return 2;
  DP_DeleteNlist(nl);
  for (int k = 0; k < nm; ++k) {
    fold(&r, n, f + (size_t)k * nall * 3, fs);
    print_vec("qm_energy", k, 1, e + k);
    print_vec("qm_force", k, 3 * n, fs);
    print_vec("qm_virial", k, 9, v + 9 * k);
    print_vec("qm_atom_energy", k, nall, ae + (size_t)k * nall);
    print_vec("qm_atom_virial", k, 9 * nall, av + (size_t)k * nall * 9);
  }
  /* the deviation sander reports: energy std and per-atom force std over the models */
  double emean = 0, estd = 0, fmax = 0;
  double* fstd = xmalloc(sizeof(double) * n);
  double* fall = xmalloc(sizeof(double) * nm * 3 * n);
  for (int k = 0; k < nm; ++k) {
    fold(&r, n, f + (size_t)k * nall * 3, fall + (size_t)k * 3 * n);
    emean += e[k] / nm;
  }
  for (int k = 0; k < nm; ++k) estd += (e[k] - emean) * (e[k] - emean) / nm;
  estd = sqrt(estd);
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int d = 0; d < 3; ++d) {
      double mean = 0, sq = 0;
      for (int k = 0; k < nm; ++k) mean += fall[(size_t)k * 3 * n + 3 * i + d] / nm;
      for (int k = 0; k < nm; ++k) {
        double dv = fall[(size_t)k * 3 * n + 3 * i + d] - mean;
        sq += dv * dv / nm;
      }
      s += sq;
    }
    fstd[i] = sqrt(s);
    if (fstd[i] > fmax) fmax = fstd[i];
  }
  print_vec("devi_e", 0, 1, &estd);
  print_vec("devi_f", 0, n, fstd);
  print_vec("devi_f_max", 0, 1, &fmax);

  /* --- the next step: atoms moved, no list rebuild (ago = 1: the kept list is used; the list
   * passed is empty to show it is not read) -------------------------------------------------- */
  double* x2 = xmalloc(sizeof(double) * 3 * n);
  for (int i = 0; i < 3 * n; ++i) x2[i] = x[i] + 0.02 * sin(1.7 * i + 0.3);
  print_vec("coord2", 0, 3 * n, x2);
  move_region(&r, x2, box);
  DP_Nlist* empty = DP_NewNlist(0, NULL, NULL, NULL);
  DP_DeepPotModelDeviComputeNList(devi, nall, r.x, r.type, box, nghost, empty, 1, e, f, v, NULL, NULL);
  if (report("devi_compute2", DP_DeepPotModelDeviCheckOK(devi))) return 2;
  for (int k = 0; k < nm; ++k) {
    fold(&r, n, f + (size_t)k * nall * 3, fs);
    print_vec("qm2_energy", k, 1, e + k);
    print_vec("qm2_force", k, 3 * n, fs);
    print_vec("qm2_virial", k, 9, v + 9 * k);
  }
  /* ago = 0 with that empty list: now it is read, and no local atom has neighbors */
  DP_DeepPotModelDeviComputeNList(devi, nall, r.x, r.type, box, nghost, empty, 0, e, NULL, NULL, NULL, NULL);
  report("devi_empty", DP_DeepPotModelDeviCheckOK(devi));
  print_vec("qm_isolated_energy", 0, nm, e);
  DP_DeleteNlist(empty);
  move_region(&r, x, box);

  /* --- the same step with one model at a time: double, float, a virtual atom ----------------- */
  nl = DP_NewNlist(r.nloc, r.ilist, r.numneigh, r.firstneigh);
  float* xf = xmalloc(sizeof(float) * 3 * (nall + 1));
  float* ff = xmalloc(sizeof(float) * 3 * (nall + 1));
  float boxf[9], vf[9];
  for (int i = 0; i < 9; ++i) boxf[i] = (float)box[i];
  for (int i = 0; i < 3 * nall; ++i) xf[i] = (float)r.x[i];
  for (int k = 0; k < nm; ++k) {
    DP_DeepPot* dp = k == 0 ? single0 : DP_NewDeepPot(paths[k]);
    if (report("single_new", DP_DeepPotCheckOK(dp))) return 2;
    double e1;
    DP_DeepPotComputeNList(dp, nall, r.x, r.type, box, nghost, nl, 0, &e1, f, v, NULL, NULL);
    if (report("single_compute", DP_DeepPotCheckOK(dp))) return 2;
    fold(&r, n, f, fs);
    print_vec("single_energy", k, 1, &e1);
    print_vec("single_force", k, 3 * n, fs);
    print_vec("single_virial", k, 9, v);
    DP_DeepPotComputeNListf(dp, nall, xf, r.type, boxf, nghost, nl, 0, &e1, ff, vf, NULL, NULL);
    if (report("single_computef", DP_DeepPotCheckOK(dp))) return 2;
    for (int i = 0; i < 3 * nall; ++i) f[i] = ff[i];
    fold(&r, n, f, fs);
    print_vec("singlef_energy", k, 1, &e1);
    print_vec("singlef_force", k, 3 * n, fs);
    print_fvec("singlef_virial", k, 9, vf);
    if (k == 0) {
      /* a virtual atom (type -1) appended as a ghost 1 A from the first QM atom, in every list */
      double* xv = xmalloc(sizeof(double) * 3 * (nall + 1));
      int* tv = xmalloc(sizeof(int) * (nall + 1));
      int** fv = xmalloc(sizeof(int*) * r.nloc);
      int* nv = xmalloc(sizeof(int) * r.nloc);
      memcpy(xv, r.x, sizeof(double) * 3 * nall);
      memcpy(tv, r.type, sizeof(int) * nall);
      for (int d = 0; d < 3; ++d) xv[3 * nall + d] = r.x[d] + (d == 0 ? 1.0 : 0.0);
      tv[nall] = -1;
      for (int i = 0; i < r.nloc; ++i) {
        fv[i] = xmalloc(sizeof(int) * (r.numneigh[i] + 1));
        fv[i][0] = nall;
        memcpy(fv[i] + 1, r.firstneigh[i], sizeof(int) * r.numneigh[i]);
        nv[i] = r.numneigh[i] + 1;
      }
      DP_Nlist* nlv = DP_NewNlist(r.nloc, r.ilist, nv, fv);
      double* fvv = xmalloc(sizeof(double) * 3 * (nall + 1));
      DP_DeepPotComputeNList(dp, nall + 1, xv, tv, box, nghost + 1, nlv, 0, &e1, fvv, v, NULL, NULL);
      if (report("virtual_compute", DP_DeepPotCheckOK(dp))) return 2;
      fold(&r, n, fvv, fs);
      print_vec("virtual_energy", 0, 1, &e1);
      print_vec("virtual_force", 0, 3 * n, fs);
      print_vec("virtual_own_force", 0, 3, fvv + 3 * nall);
      DP_DeleteNlist(nlv);
      for (int i = 0; i < r.nloc; ++i) free(fv[i]);
      free(fv), free(nv), free(xv), free(tv), free(fvv);
    }
    if (k > 0) DP_DeleteDeepPot(dp);
  }
  DP_DeleteNlist(nl);

  /* --- the whole periodic system, no list given (the library builds list and images) -------- */
  double* av_full = xmalloc(sizeof(double) * 9 * n);
  double* ae_full = xmalloc(sizeof(double) * n);
  DP_DeepPotModelDeviCompute(devi, n, x, type, box, e, fall, v, NULL, NULL);
  if (report("full_devi", DP_DeepPotModelDeviCheckOK(devi))) return 2;
  for (int k = 0; k < nm; ++k) {
    print_vec("full_energy", k, 1, e + k);
    print_vec("full_force", k, 3 * n, fall + (size_t)k * 3 * n);
    print_vec("full_virial", k, 9, v + 9 * k);
  }
  double e1;
  DP_DeepPotCompute(single0, n, x, type, box, &e1, fs, v, ae_full, av_full);
  if (report("full_single", DP_DeepPotCheckOK(single0))) return 2;
  print_vec("full_atom_energy", 0, n, ae_full);
  print_vec("full_atom_virial", 0, 9 * n, av_full);
  /* two frames at once */
  double* x12 = xmalloc(sizeof(double) * 6 * n);
  double box2[18], e2[2], v2[18];
  double* f2 = xmalloc(sizeof(double) * 6 * n);
  memcpy(x12, x, sizeof(double) * 3 * n);
  memcpy(x12 + 3 * n, x2, sizeof(double) * 3 * n);
  memcpy(box2, box, sizeof(box));
  memcpy(box2 + 9, box, sizeof(box));
  DP_DeepPotCompute2(single0, 2, n, x12, type, box2, NULL, NULL, e2, f2, v2, NULL, NULL);
  if (report("frames", DP_DeepPotCheckOK(single0))) return 2;
  print_vec("frames_energy", 0, 2, e2);
  print_vec("frames_force", 0, 6 * n, f2);
  print_vec("frames_virial", 0, 18, v2);

  /* --- errors: a message from CheckOK, never an abort --------------------------------------- */
  DP_DeepPot* missing = DP_NewDeepPot("/nonexistent/dir/model.pth");
  report("err_missing", DP_DeepPotCheckOK(missing));
  DP_DeepPotCompute(missing, n, x, type, box, &e1, fs, v, NULL, NULL);
  report("err_missing_compute", DP_DeepPotCheckOK(missing));
  DP_DeleteDeepPot(missing);
  const char* two[2] = {paths[0], "/nonexistent/other.pt2"};
  DP_DeepPotModelDevi* devi_bad = DP_NewDeepPotModelDevi(two, 2);
  report("err_devi_missing", DP_DeepPotModelDeviCheckOK(devi_bad));
  DP_DeleteDeepPotModelDevi(devi_bad);
  int saved = type[1];
  type[1] = 7;
  DP_DeepPotCompute(single0, n, x, type, box, &e1, fs, v, NULL, NULL);
  report("err_type", DP_DeepPotCheckOK(single0));
  type[1] = saved;
  DP_DeepPotCompute(single0, n, x, type, box, &e1, fs, v, NULL, NULL);
  double recovered = !report("err_after", DP_DeepPotCheckOK(single0));
  print_vec("recovered", 0, 1, &recovered);
  DP_DeepPot* fresh = DP_NewDeepPot(paths[0]);
  DP_Nlist* none = DP_NewNlist(0, NULL, NULL, NULL); /* the first list this object sees is empty */
  DP_DeepPotComputeNList(fresh, nall, r.x, r.type, box, nghost, none, 0, &e1, f, v, NULL, NULL);
  if (report("fresh_empty", DP_DeepPotCheckOK(fresh))) return 2;
  print_vec("fresh_isolated_energy", 0, 1, &e1);
  DP_DeleteNlist(none);
  DP_DeepPotComputeNList(fresh, nall, r.x, r.type, box, nghost, NULL, 0, &e1, f, v, NULL, NULL);
  report("err_null_nlist", DP_DeepPotCheckOK(fresh));
  nl = DP_NewNlist(r.nloc, r.ilist, r.numneigh, r.firstneigh);
  DP_DeepPotComputeNList(fresh, nall, r.x, r.type, box, nall + 1, nl, 0, &e1, f, v, NULL, NULL);
  report("err_nghost", DP_DeepPotCheckOK(fresh));
  DP_DeepPotModelDeviComputeNList2(devi, 2, nall, r.x, r.type, box, nghost, nl, 0, NULL, NULL, e, f, v, NULL, NULL);
  report("err_devi_frames", DP_DeepPotModelDeviCheckOK(devi));
  DP_DeleteNlist(nl);
  DP_DeleteDeepPot(fresh);

  DP_DeleteDeepPot(single0);
  DP_DeleteDeepPotModelDevi(devi);
  printf("done\n");
  return 0;
}
