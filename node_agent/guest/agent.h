/* agent.h — what every module shares, implemented in main.c: the mode (PID 1 or test),
 * the event loop's poll set, the clock, console messages and the fatal-error exit. */
#ifndef CORRAL_AGENT_H
#define CORRAL_AGENT_H

#include <poll.h>
#include <stdint.h>

#ifndef AGENT_VERSION
#define AGENT_VERSION "0.0.0-dev"
#endif

#define MAX_STREAMS 256
#define MAX_POLLFDS (3 * MAX_STREAMS + 4)

/* 1 when running as PID 1 inside the VM, 0 in test mode (--channel). */
extern int agent_is_init;

struct pollset {
	struct pollfd fds[MAX_POLLFDS];
	int n;
};

/* Adds fd and returns its index for this loop iteration. */
int pollset_add(struct pollset *ps, int fd, short events);
/* The events that fired at idx (0 when idx is -1). */
short pollset_revents(const struct pollset *ps, int idx);

int64_t now_ms(void); /* CLOCK_MONOTONIC in milliseconds */

/* One "corral-agent: ..." line on the console (stderr in test mode). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the reason and ends: powers the VM off as PID 1, exit(1) in test mode. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
