// MKL's kernel choice on AMD CPUs.
//
// Intel MKL (inside the PyTorch and Paddle wheels) asks mkl_serv_intel_cpu_true() before it
// looks at the CPU's features; on a non-Intel CPU the answer 0 sends every BLAS call to its
// generic branch. On the AMD EPYC (AVX-512) of our benchmarks that made fp64 GEMMs run at 22
// GFLOP/s a core instead of 45, and half of a DPA-1 training step is such GEMMs
// (docs/performance.md, "MKL on AMD CPUs"). MKL looks the function up by name through the
// dynamic linker, so a definition found first (this one: the backend libraries of the core
// contain it, and Python loads libdpmd_mkl_cpu.so globally before the framework) answers 1 on
// AMD too; MKL then picks its branch from the features the CPU reports (cpuid), as on Intel.
// DPMD_MD_MKL_AMD=0 restores MKL's own answer. Other vendors keep it (0).
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

extern "C" __attribute__((visibility("default"))) int mkl_serv_intel_cpu_true() {
  static int answer = -1;  // a race here writes the same value twice: harmless
  if (answer < 0) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    char vendor[13] = {0};
#if defined(__x86_64__) || defined(__i386__)  // elsewhere there is no MKL to answer
    if (__get_cpuid(0, &a, &b, &c, &d)) {
      std::memcpy(vendor, &b, 4);
      std::memcpy(vendor + 4, &d, 4);
      std::memcpy(vendor + 8, &c, 4);
    }
#endif
    const char* off = std::getenv("DPMD_MD_MKL_AMD");
    const bool amd = std::strcmp(vendor, "AuthenticAMD") == 0 && !(off && std::strcmp(off, "0") == 0);
    answer = (std::strcmp(vendor, "GenuineIntel") == 0 || amd) ? 1 : 0;
  }
  return answer;
}
