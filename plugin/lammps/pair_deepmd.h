// pair_style deepmd: deepmd_md deep potentials in LAMMPS, over the C API of
// the deepmd_md core (core/include/dpmd_c.h).
#ifndef DPMD_PAIR_DEEPMD_H
#define DPMD_PAIR_DEEPMD_H

#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include "dpmd_c.h"
#include "pair.h"

namespace LAMMPS_NS {

class PairDeepMD : public Pair {
 public:
  PairDeepMD(class LAMMPS *);
  ~PairDeepMD() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  double memory_usage() override;

 private:
  std::vector<dpmd_model *> models;
  std::vector<std::string> model_files;
  std::string out_file = "model_devi.out";
  int out_freq = 100;
  bool out_atomic = false;
  double relative_f = -1.0, relative_v = -1.0;
  std::vector<double> fparam, aparam;
  std::vector<int> type_map;    // LAMMPS type (1..ntypes) -> model type, -1 unmapped
  std::vector<std::string> type_names;
  bool coeff_set = false;
  double rcut_max = 0.0, ghost_cut_max = 0.0;
  bool message_passing = false;    // some model passes messages between atoms
  bool use_exchange = false;       // ... and they all exchange ghost features through LAMMPS' comm
  bool widened = false;            // ... or not, on several ranks: ghosts out to the receptive field
  bool widened_noted = false;      // the info line about it is printed
  static constexpr int kMaxCommCols = 256;    // widest row one forward/reverse pass moves
  dpmd_exchange exchange{sizeof(dpmd_exchange), this, &PairDeepMD::exchange_forward,
                         &PairDeepMD::exchange_reverse};
  FILE *devi_fp = nullptr;
  bigint last_devi_step = -1;

  // scratch
  std::vector<double> fbuf;     // per model: nall*3
  std::vector<double> ebuf, vbuf;
  std::vector<double> aparam_buf;
  std::vector<int> owner;       // message passing: local index of each local/ghost atom's owner
  std::unordered_map<tagint, int> tag_local;    // atom ID -> local index (when LAMMPS has no atom map)
  // reverse communication buffer of fold_ghosts: rows of `stride` doubles
  std::vector<double> rcbuf;
  // rows in flight through LAMMPS' comm: columns xcol0..xcol0+xncol-1 of [nall, xstride]
  double *xrows = nullptr;
  int xstride = 0, xcol0 = 0, xncol = 0;

  void free_models();
  void load_models();
  void fold_ghosts(int stride);    // sum ghost rows of rcbuf onto owners
  void comm_rows(double *rows, int ncol, bool forward);
  static int exchange_forward(void *ctx, double *rows, int ncol);    // dpmd_exchange callbacks
  static int exchange_reverse(void *ctx, double *rows, int ncol);
  void build_owner(int nlocal, int nall);    // fill `owner` (one rank)
  void model_deviation(int nlocal, int nall, std::vector<double> &virials, bigint step);
  [[noreturn]] void compute_error(int k);
};

}    // namespace LAMMPS_NS
#endif
