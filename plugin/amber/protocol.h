/* Wire format between the `qchem` client (qchem_client.c, run by sander every step) and the
 * model server (amber_server.c, started once by `dpmd amber`): one request and one reply per
 * connection over a unix stream socket, native byte order (both ends run on one host). */
#ifndef DPMD_AMBER_PROTOCOL_H
#define DPMD_AMBER_PROTOCOL_H

#include <stdint.h>

#define DPMD_AMBER_MAGIC 0x414d5044 /* "DPMA" */
#define DPMD_AMBER_VERSION 1
#define DPMD_AMBER_NAME 4      /* bytes per element name, NUL padded */
#define DPMD_AMBER_MAXATOMS 1000000
#define DPMD_AMBER_MAXMSG 4096

/* Hartree in eV and bohr in Angstrom (CODATA 2018): the model speaks eV and Angstrom, sander
 * reads Hartree and Hartree/bohr. */
#define DPMD_HARTREE_EV 27.211386245988
#define DPMD_BOHR_A 0.529177210903

/* Environment of the client, set by `dpmd amber` for sander and its children. */
#define DPMD_AMBER_ENV_SOCKET "DPMD_AMBER_SOCKET" /* the server's socket */
#define DPMD_AMBER_ENV_ERROR "DPMD_AMBER_ERROR"   /* file for the client's last error */

/* request: header, then natoms names [natoms][DPMD_AMBER_NAME], then coordinates
 * [natoms][3] doubles (Angstrom, as sander wrote them in $molecule; link atoms last). */
typedef struct {
  int32_t magic, version;
  int32_t natoms;
  int32_t ncharges; /* MM point charges sander passed ($external_charges): electrostatic embedding */
  int32_t charge, multiplicity;
} dpmd_amber_request;

/* reply: header, then (status 0) gradient [natoms][3] doubles in Hartree/bohr, or
 * (status != 0) msglen bytes of a one-line message. */
typedef struct {
  int32_t magic, status;
  int32_t natoms, msglen;
  double energy; /* Hartree */
} dpmd_amber_reply;

#endif
