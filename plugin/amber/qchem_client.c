/* `qchem` for sander's external-QM interface (qm_theory='EXTERN' with &qc), answered by the
 * model server of `dpmd amber` (amber_server.c, protocol.h).
 *
 * sander runs, through the shell, every force evaluation:
 *   qchem [-np N] [-nt M] qc_job.inp qc_job.log qc_job.sav
 * This program reads the $molecule block of qc_job.inp ("charge multiplicity", then
 * "El x y z" in Angstrom per QM atom, link atoms last), sends it to the server whose socket
 * is $DPMD_AMBER_SOCKET, and writes what sander reads back:
 *   qc_job.log  " SCF   energy in the final basis set = E" (Hartree)
 *   efield.dat  one line dE/dx dE/dy dE/dz (Hartree/bohr, 3 fields of 25 characters) per QM
 *               atom; it would start with the electric field at each MM charge, but the server
 *               refuses MM charges (electrostatic embedding) for models without such an output.
 * A new process every step: kept small, static when the toolchain allows, no stdio on input.
 * On failure: the message goes to $DPMD_AMBER_ERROR (for `dpmd amber` to report) or stderr,
 * and the exit status is 1, which stops sander. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char* fmt, ...);

static void fail(const char* fmt, ...) {
  char msg[DPMD_AMBER_MAXMSG];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof msg - 2) n = (int)sizeof msg - 2;
  msg[n++] = '\n';
  const char* path = getenv(DPMD_AMBER_ENV_ERROR);
  int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  if (fd >= 0) {
    (void)!write(fd, msg, (size_t)n);
    close(fd);
  } else {
    (void)!write(2, "qchem (deepmd_md): ", 19);
    (void)!write(2, msg, (size_t)n);
  }
  exit(1);
}

static int io_full(int fd, void* buf, size_t n, int writing) {
  char* p = buf;
  while (n) {
    ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static char* slurp(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) fail("cannot read %s: %s", path, strerror(errno));
  char* buf = malloc((size_t)st.st_size + 1);
  if (!buf || io_full(fd, buf, (size_t)st.st_size, 0)) fail("cannot read %s", path);
  buf[st.st_size] = 0;
  close(fd);
  return buf;
}

static char* next_line(char* p) {
  p = strchr(p, '\n');
  return p ? p + 1 : NULL;
}

/* the line after the one starting with `tag` ("$molecule"), case-insensitive; NULL if none */
static char* block(char* text, const char* tag) {
  size_t n = strlen(tag);
  for (char* p = text; p; p = next_line(p)) {
    while (*p == ' ' || *p == '\t') p++;
    if (!strncasecmp(p, tag, n)) return next_line(p);
  }
  return NULL;
}

static int is_end(const char* p) {
  while (*p == ' ' || *p == '\t') p++;
  return !strncasecmp(p, "$end", 4);
}

int main(int argc, char** argv) {
  const char* pos[3] = {0};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-np") || !strcmp(argv[i], "-nt")) i++; /* parallel options: unused */
    else if (argv[i][0] != '-' && npos < 3) pos[npos++] = argv[i];
  }
  if (npos < 2) fail("usage: qchem [-np N] [-nt M] INPUT LOG [SAVE] (run by sander through `dpmd amber`)");
  const char* sock = getenv(DPMD_AMBER_ENV_SOCKET);
  if (!sock || !*sock)
    fail("this qchem is deepmd_md's client for sander: run sander through `dpmd amber -m MODEL ...`");

  char* text = slurp(pos[0]);
  char* p = block(text, "$molecule");
  if (!p) fail("%s has no $molecule block", pos[0]);
  dpmd_amber_request q = {DPMD_AMBER_MAGIC, DPMD_AMBER_VERSION, 0, 0, 0, 1};
  char* end;
  q.charge = (int32_t)strtol(p, &end, 10);
  q.multiplicity = (int32_t)strtol(end, &end, 10);
  int cap = 64;
  char* names = malloc((size_t)cap * DPMD_AMBER_NAME);
  double* coord = malloc(sizeof(double) * 3 * cap);
  for (p = next_line(p); p && !is_end(p); p = next_line(p)) {
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\n' || *p == '\r') continue;
    if (q.natoms == cap) {
      cap *= 2;
      names = realloc(names, (size_t)cap * DPMD_AMBER_NAME);
      coord = realloc(coord, sizeof(double) * 3 * cap);
    }
    char* el = names + (size_t)q.natoms * DPMD_AMBER_NAME;
    memset(el, 0, DPMD_AMBER_NAME);
    for (int k = 0; k < DPMD_AMBER_NAME && *p && *p != ' ' && *p != '\t'; k++) el[k] = *p++;
    for (int k = 0; k < 3; k++) {
      coord[3 * q.natoms + k] = strtod(p, &end);
      if (end == p) fail("%s: cannot read the coordinates of QM atom %d", pos[0], q.natoms + 1);
      p = end;
    }
    q.natoms++;
  }
  if (!p) fail("%s: the $molecule block has no $end", pos[0]);
  if (!q.natoms) fail("%s: no atoms in the $molecule block", pos[0]);
  for (p = block(text, "$external_charges"); p && !is_end(p); p = next_line(p)) q.ncharges++;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
  if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr))
    fail("the model server of `dpmd amber` is not running (socket %s: %s)", sock, strerror(errno));
  if (io_full(fd, &q, sizeof q, 1) || io_full(fd, names, (size_t)q.natoms * DPMD_AMBER_NAME, 1) ||
      io_full(fd, coord, sizeof(double) * 3 * q.natoms, 1))
    fail("cannot send the QM region to the model server: %s", strerror(errno));
  dpmd_amber_reply r;
  if (io_full(fd, &r, sizeof r, 0) || r.magic != DPMD_AMBER_MAGIC)
    fail("the model server of `dpmd amber` stopped before answering");
  if (r.status) {
    char msg[DPMD_AMBER_MAXMSG];
    int n = r.msglen < (int)sizeof msg - 1 ? r.msglen : (int)sizeof msg - 1;
    if (n < 0 || io_full(fd, msg, (size_t)n, 0)) n = 0;
    msg[n] = 0;
    fail("%s", msg);
  }
  if (r.natoms != q.natoms) fail("the model server answered for %d atoms, not %d", r.natoms, q.natoms);
  double* grad = coord; /* reuse: the coordinates are no longer needed */
  if (io_full(fd, grad, sizeof(double) * 3 * q.natoms, 0))
    fail("the model server of `dpmd amber` stopped before answering");
  close(fd);

  FILE* f = fopen(pos[1], "w");
  if (!f) fail("cannot write %s: %s", pos[1], strerror(errno));
  fprintf(f, " deepmd_md model server (dpmd amber): %d QM atoms\n", q.natoms);
  fprintf(f, " SCF   energy in the final basis set = %.15f\n", r.energy);
  if (fclose(f)) fail("cannot write %s", pos[1]);
  f = fopen("efield.dat", "w");
  if (!f) fail("cannot write efield.dat: %s", strerror(errno));
  /* sander reads each line with the fixed format 3(f25.20): three fields of exactly 25 characters
   * (an explicit decimal point and exponent are allowed inside a field) */
  for (int i = 0; i < q.natoms; i++) {
    for (int k = 0; k < 3; k++)
      if (!(fabs(grad[3 * i + k]) < 1e99)) fail("gradient of QM atom %d out of range: %g", i + 1, grad[3 * i + k]);
    fprintf(f, "%25.17e%25.17e%25.17e\n", grad[3 * i], grad[3 * i + 1], grad[3 * i + 2]);
  }
  if (fclose(f)) fail("cannot write efield.dat");
  return 0;
}
