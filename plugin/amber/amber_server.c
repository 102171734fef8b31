/* dpmd_amber_server: keeps one frozen model loaded (through the core's C API) and answers the
 * `qchem` client sander runs every step (protocol.h). Started and stopped by `dpmd amber`.
 *
 *   dpmd_amber_server MODEL WORKDIR [--parent PID] [--fparam V...] [--aparam V...]
 *                     [--trace FILE] [--threads N] [--stats]
 *
 * Listens on WORKDIR/server.sock; prints "ready" (or "error: <message>") as its first stdout line.
 * Stops on SIGTERM/SIGINT/SIGHUP, and when its parent dies (PR_SET_PDEATHSIG), removing the
 * socket; after a parent death also the rest of WORKDIR (nobody else is left to do it).
 * The QM region is evaluated as a cluster (open boundaries; the core builds the neighbor list):
 * sander passes no box to an external program and moves the QM region near the origin. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dpmd_c.h"
#include "protocol.h"

static char sock_path[sizeof(((struct sockaddr_un*)0)->sun_path)];
static char dir_files[3][4096]; /* WORKDIR/{qchem,error} and WORKDIR itself */
static pid_t parent_pid;
static int want_stats;
static char stats_line[256];
static size_t stats_len;

static void on_signal(int sig) {
  (void)sig;
  if (sock_path[0]) unlink(sock_path);
  if (parent_pid > 0 && getppid() != parent_pid) { /* orphaned: clean up for the parent */
    unlink(dir_files[0]);
    unlink(dir_files[1]);
    rmdir(dir_files[2]);
  }
  if (want_stats && stats_len) (void)!write(2, stats_line, stats_len);
  _exit(0);
}

static int read_full(int fd, void* buf, size_t n) {
  char* p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void* buf, size_t n) {
  const char* p = buf;
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* --- model and element names ------------------------------------------------------------ */

static dpmd_model* model;
static const char* model_path;
static double* fparam;
static double* aparam_one; /* one atom's aparam, repeated for every atom */
static int dim_fparam, dim_aparam;

typedef struct { char name[DPMD_AMBER_NAME + 1]; int type; } name_entry;
static name_entry names[64];
static int nnames;

static void type_map_text(char* out, size_t cap) {
  size_t k = 0;
  int nt = dpmd_model_ntypes(model);
  k += snprintf(out + k, cap - k, "[");
  for (int t = 0; t < nt && k < cap; t++)
    k += snprintf(out + k, cap - k, "%s%s", t ? ", " : "", dpmd_model_type_name(model, t));
  if (k < cap) snprintf(out + k, cap - k, "]");
}

/* model type of an element name as sander writes it ("O", "CL", "Cl"), -1 when absent */
static int type_of(const char* el) {
  for (int i = 0; i < nnames; i++)
    if (!strcmp(names[i].name, el)) return names[i].type;
  int t = dpmd_model_type_index(model, el);
  for (int k = 0; t < 0 && k < dpmd_model_ntypes(model); k++)
    if (!strcasecmp(dpmd_model_type_name(model, k), el)) t = k;
  if (nnames < (int)(sizeof names / sizeof names[0])) {
    snprintf(names[nnames].name, sizeof names[nnames].name, "%s", el);
    names[nnames++].type = t;
  }
  return t;
}

/* --- one request ------------------------------------------------------------------------ */

static FILE* trace;
static long nrequests;
static double t_compute, t_total;

static void reply_error(int fd, const char* msg) {
  dpmd_amber_reply r = {DPMD_AMBER_MAGIC, 1, 0, (int32_t)strlen(msg), 0.0};
  if (!write_full(fd, &r, sizeof r)) (void)write_full(fd, msg, strlen(msg));
}

static void serve(int fd) {
  static char* el;
  static double *coord, *grad;
  static int* atype;
  static int cap;
  char msg[DPMD_AMBER_MAXMSG];
  dpmd_amber_request q;
  double t0 = now();
  if (read_full(fd, &q, sizeof q)) return;
  if (q.magic != DPMD_AMBER_MAGIC || q.version != DPMD_AMBER_VERSION || q.natoms < 1 ||
      q.natoms > DPMD_AMBER_MAXATOMS || q.ncharges < 0) {
    reply_error(fd, "the qchem client and the model server are of different versions of deepmd_md");
    return;
  }
  int n = q.natoms;
  if (n > cap) {
    el = realloc(el, (size_t)n * DPMD_AMBER_NAME);
    coord = realloc(coord, sizeof(double) * 3 * n);
    grad = realloc(grad, sizeof(double) * 3 * n);
    atype = realloc(atype, sizeof(int) * n);
    if (!el || !coord || !grad || !atype) { reply_error(fd, "model server: out of memory"); exit(3); }
    cap = n;
  }
  if (read_full(fd, el, (size_t)n * DPMD_AMBER_NAME) || read_full(fd, coord, 3 * sizeof(double) * n))
    return;
  if (q.ncharges > 0) {
    snprintf(msg, sizeof msg, "sander passed %d MM point charges (electrostatic embedding) but %s has "
             "no electrostatic-embedding output: set qmmm_int=5 in &qmmm (mechanical embedding)",
             q.ncharges, model_path);
    reply_error(fd, msg);
    return;
  }
  for (int k = 0; k < 3 * n; k++)
    if (!isfinite(coord[k])) { /* sander writes NaN once the run has blown up */
      snprintf(msg, sizeof msg, "sander passed a non-finite coordinate for QM atom %d of %d: the "
               "simulation blew up before this step (see mdout)", k / 3 + 1, n);
      reply_error(fd, msg);
      return;
    }
  for (int i = 0; i < n; i++) {
    char name[DPMD_AMBER_NAME + 1];
    memcpy(name, el + (size_t)i * DPMD_AMBER_NAME, DPMD_AMBER_NAME);
    name[DPMD_AMBER_NAME] = 0;
    atype[i] = type_of(name);
    if (atype[i] < 0) {
      char tm[1024];
      type_map_text(tm, sizeof tm);
      snprintf(msg, sizeof msg, "element %s of the QM region (atom %d of %d in qc_job.inp) is not in "
               "the type_map of %s %s", name, i + 1, n, model_path, tm);
      reply_error(fd, msg);
      return;
    }
  }
  double* ap = NULL;
  if (dim_aparam) {
    ap = malloc(sizeof(double) * dim_aparam * n);
    for (int i = 0; ap && i < n; i++) memcpy(ap + i * dim_aparam, aparam_one, sizeof(double) * dim_aparam);
  }
  dpmd_input in = DPMD_INPUT_INIT;
  in.nloc = n;
  in.coord = coord;
  in.atype = atype;
  in.fparam = fparam;
  in.aparam = ap;
  dpmd_output out = DPMD_OUTPUT_INIT;
  out.force = grad; /* forces (eV/A) first, turned into the gradient below */
  double t1 = now();
  int rc = dim_aparam && !ap ? -1 : dpmd_compute(model, &in, &out);
  t_compute += now() - t1;
  free(ap);
  if (rc) {
    snprintf(msg, sizeof msg, "%s: %s", model_path, rc == -1 && !ap && dim_aparam ? "out of memory"
                                                                                  : dpmd_last_error());
    reply_error(fd, msg);
    return;
  }
  int finite = isfinite(out.energy);
  for (int k = 0; k < 3 * n; k++) finite &= isfinite(grad[k]);
  if (trace) {
    fprintf(trace, "{\"request\": %ld, \"elements\": [", nrequests);
    for (int i = 0; i < n; i++) fprintf(trace, "%s\"%.*s\"", i ? ", " : "", DPMD_AMBER_NAME, el + i * DPMD_AMBER_NAME);
    fprintf(trace, "], \"coord\": [");
    for (int k = 0; k < 3 * n; k++) fprintf(trace, "%s%.17g", k ? ", " : "", coord[k]);
    fprintf(trace, "], \"energy\": %.17g, \"force\": [", out.energy);
    for (int k = 0; k < 3 * n; k++) fprintf(trace, "%s%.17g", k ? ", " : "", grad[k]);
    fprintf(trace, "]}\n");
    fflush(trace);
  }
  if (!finite) {
    snprintf(msg, sizeof msg, "%s returned a non-finite energy or force for the QM region", model_path);
    reply_error(fd, msg);
    return;
  }
  const double to_grad = -DPMD_BOHR_A / DPMD_HARTREE_EV; /* eV/A force -> Hartree/bohr gradient */
  for (int k = 0; k < 3 * n; k++) grad[k] *= to_grad;
  dpmd_amber_reply r = {DPMD_AMBER_MAGIC, 0, n, 0, out.energy / DPMD_HARTREE_EV};
  if (!write_full(fd, &r, sizeof r)) (void)write_full(fd, grad, 3 * sizeof(double) * n);
  nrequests++;
  t_total += now() - t0;
  int len = snprintf(stats_line, sizeof stats_line, "dpmd_amber_server: %ld requests, model %.4f ms, "
                     "request %.4f ms per request\n", nrequests, 1e3 * t_compute / nrequests,
                     1e3 * t_total / nrequests);
  stats_len = len > 0 && len < (int)sizeof stats_line ? (size_t)len : 0;
}

/* --- start-up --------------------------------------------------------------------------- */

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char* fmt, ...);
static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("error: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  exit(2);
}

static int parse_values(int argc, char** argv, int* i, double** out) {
  int n = 0;
  *out = malloc(sizeof(double) * (size_t)argc);
  while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) {
    char* end;
    (*out)[n] = strtod(argv[++*i], &end);
    if (*end) fail("not a number: %s", argv[*i]);
    n++;
  }
  return n;
}

int main(int argc, char** argv) {
  if (argc < 3) fail("usage: dpmd_amber_server MODEL WORKDIR [options]");
  model_path = argv[1];
  const char* dir = argv[2];
  int nf = 0, na = 0, threads = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--parent") && i + 1 < argc) parent_pid = (pid_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--fparam")) nf = parse_values(argc, argv, &i, &fparam);
    else if (!strcmp(argv[i], "--aparam")) na = parse_values(argc, argv, &i, &aparam_one);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--stats")) want_stats = 1;
    else if (!strcmp(argv[i], "--trace") && i + 1 < argc) {
      trace = fopen(argv[++i], "w");
      if (!trace) fail("cannot write the trace file %s: %s", argv[i], strerror(errno));
    } else fail("unknown option %s", argv[i]);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN); /* a client that died mid-reply must not stop the server */
  snprintf(dir_files[0], sizeof dir_files[0], "%s/qchem", dir);
  snprintf(dir_files[1], sizeof dir_files[1], "%s/error", dir);
  snprintf(dir_files[2], sizeof dir_files[2], "%s", dir);
  if (parent_pid > 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent_pid) on_signal(SIGTERM); /* the parent died before prctl */
  }

  if (threads > 0) dpmd_set_num_threads(threads, 1);
  model = dpmd_model_load(model_path);
  if (!model) fail("cannot load the model %s: %s", model_path, dpmd_last_error());
  dim_fparam = dpmd_model_dim_fparam(model);
  dim_aparam = dpmd_model_dim_aparam(model);
  if (nf != dim_fparam)
    fail("%s takes %d frame parameters, --fparam gave %d", model_path, dim_fparam, nf);
  if (na != dim_aparam)
    fail("%s takes %d atomic parameters (the same for every atom), --aparam gave %d", model_path,
         dim_aparam, na);

  int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (snprintf(addr.sun_path, sizeof addr.sun_path, "%s/server.sock", dir) >= (int)sizeof addr.sun_path)
    fail("socket path too long in %s", dir);
  memcpy(sock_path, addr.sun_path, sizeof sock_path);
  if (srv < 0 || bind(srv, (struct sockaddr*)&addr, sizeof addr) || listen(srv, 8)) {
    sock_path[0] = 0; /* not ours to remove */
    fail("cannot listen on %s: %s", addr.sun_path, strerror(errno));
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int fd = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("dpmd_amber_server: accept");
      on_signal(SIGTERM);
    }
    serve(fd);
    close(fd);
  }
}
