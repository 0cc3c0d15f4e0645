/* exec.h — EXEC streams: request parsing, STARTED, output under the window, stdin,
 * SIGNAL, RESIZE, timeouts and the final EXIT. */
#ifndef CORRAL_EXEC_H
#define CORRAL_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent.h"
#include "stream.h"

void exec_start(uint32_t id, const unsigned char *p, size_t n);
void exec_stdin(struct stream *s, const unsigned char *p, size_t n, int eof);
void exec_signal(struct stream *s, const unsigned char *p, size_t n);
void exec_resize(struct stream *s, const unsigned char *p, size_t n);
/* Kills the process group (if still running), closes everything, frees the stream. */
void exec_abort(struct stream *s);
/* A child was reaped (any child: PID 1 also reaps orphans, which match no stream). */
void exec_reaped(pid_t pid, int status);

/* Registers this iteration's fds; returns the ms deadline the stream needs, or -1. */
int64_t exec_poll_add(struct stream *s, struct pollset *ps);
void exec_service(struct stream *s, const struct pollset *ps);

#endif
