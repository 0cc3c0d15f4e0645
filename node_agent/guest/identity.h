/* identity.h — what makes one sandbox's guest its own, given by the host at every
 * handshake: hostname, wall-clock time and fresh entropy. A guest restored from a boot
 * snapshot would otherwise share all three with the snapshot's first sandbox. */
#ifndef CORRAL_IDENTITY_H
#define CORRAL_IDENTITY_H

#include <stddef.h>

/* Applies the identity fields of a host HELLO payload (already checked well-formed):
 * 2 wall clock in ns since the epoch, 3 entropy bytes, 4 hostname. Absent fields are
 * left alone; bad ones are reported on the console and skipped. Only as PID 1. */
void identity_apply(const unsigned char *p, size_t n);

#endif
