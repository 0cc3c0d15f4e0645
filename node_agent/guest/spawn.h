/* spawn.h — starting one EXEC child: pipes or PTY, fork, and everything the child sets up
 * before execve (session, controlling terminal, rlimits, user, cwd, PATH lookup). */
#ifndef CORRAL_SPAWN_H
#define CORRAL_SPAWN_H

#include <sys/resource.h>
#include <sys/types.h>

#include "user.h"

struct spawn_rlimit {
	int resource;
	struct rlimit lim;
};

struct spawn_req {
	char **argv, **envp;           /* NULL-terminated */
	const char *cwd;               /* NULL = "/" */
	const struct user_ids *user;   /* NULL = the agent's own user */
	const struct spawn_rlimit *rlimits;
	int nrlimits;
	int pty;
	unsigned short rows, cols;
	int stdin_pipe;
};

/* Where a spawn failed; the child reports it through a close-on-exec pipe. */
enum spawn_stage { SP_SETUP, SP_RLIMIT, SP_USER, SP_CWD, SP_EXEC, SP_NOT_REGULAR };

struct spawn_err {
	int stage;
	int err;
};

/* The parent's ends, all non-blocking and close-on-exec. */
struct spawn_res {
	pid_t pid;
	int out[2]; /* stdout, stderr (PTY: master, -1) */
	int in;     /* stdin (PTY: a duplicate of the master), -1 without a stdin pipe */
	int pty;    /* PTY master or -1 */
};

/* Remembers the limits children start from and raises the agent's own fd limit. */
void spawn_setup(void);
/* Parses "NAME=soft:hard" (NAME as in RLIMIT_NAME, values a number or "unlimited"). */
int spawn_parse_rlimit(const char *s, struct spawn_rlimit *out);
/* Starts the child; 0 once it has called execve, -1 with *err filled otherwise. */
int spawn(const struct spawn_req *rq, struct spawn_res *res, struct spawn_err *err);

#endif
