/* spawn.c — fork/exec of EXEC children. The parent prepares every fd (so setup errors
 * surface before fork); the child becomes a session leader, takes its terminal, applies
 * rlimits, switches user, changes directory and looks the program up in the PATH of its
 * own environment. A failure after fork travels back as a spawn_err on a CLOEXEC pipe:
 * EOF on that pipe means execve succeeded. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define CHILD_UMASK 022
#define PIPE_SIZE (256 << 10)
#define AGENT_NOFILE 65536

static struct rlimit child_nofile;

void spawn_setup(void)
{
	getrlimit(RLIMIT_NOFILE, &child_nofile);
	struct rlimit r = {AGENT_NOFILE, AGENT_NOFILE};
	if (child_nofile.rlim_max >= AGENT_NOFILE || setrlimit(RLIMIT_NOFILE, &r) < 0) {
		r.rlim_cur = r.rlim_max = child_nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{"AS", RLIMIT_AS},           {"CORE", RLIMIT_CORE},
	{"CPU", RLIMIT_CPU},         {"DATA", RLIMIT_DATA},
	{"FSIZE", RLIMIT_FSIZE},     {"LOCKS", RLIMIT_LOCKS},
	{"MEMLOCK", RLIMIT_MEMLOCK}, {"MSGQUEUE", RLIMIT_MSGQUEUE},
	{"NICE", RLIMIT_NICE},       {"NOFILE", RLIMIT_NOFILE},
	{"NPROC", RLIMIT_NPROC},     {"RSS", RLIMIT_RSS},
	{"RTPRIO", RLIMIT_RTPRIO},   {"RTTIME", RLIMIT_RTTIME},
	{"SIGPENDING", RLIMIT_SIGPENDING}, {"STACK", RLIMIT_STACK},
};

static int parse_limit(const char *s, size_t n, rlim_t *out)
{
	if (n == 9 && !memcmp(s, "unlimited", 9)) {
		*out = RLIM_INFINITY;
		return 0;
	}
	if (n == 0 || n > 19)
		return -1;
	unsigned long long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = (rlim_t)v;
	return 0;
}

int spawn_parse_rlimit(const char *s, struct spawn_rlimit *out)
{
	const char *eq = strchr(s, '='), *colon = eq ? strchr(eq, ':') : NULL;
	if (!colon)
		return -1;
	size_t nlen = (size_t)(eq - s);
	out->resource = -1;
	for (size_t i = 0; i < sizeof rlimit_names / sizeof rlimit_names[0]; i++)
		if (strlen(rlimit_names[i].name) == nlen && !memcmp(s, rlimit_names[i].name, nlen))
			out->resource = rlimit_names[i].resource;
	if (out->resource < 0 ||
	    parse_limit(eq + 1, (size_t)(colon - eq - 1), &out->lim.rlim_cur) < 0 ||
	    parse_limit(colon + 1, strlen(colon + 1), &out->lim.rlim_max) < 0 ||
	    out->lim.rlim_cur > out->lim.rlim_max)
		return -1;
	return 0;
}

/* ---- child side (after fork, before execve) ---- */

static _Noreturn void child_fail(int ep, int stage, int err)
{
	struct spawn_err se = {stage, err};
	ssize_t r = write(ep, &se, sizeof se);
	(void)r;
	_exit(127);
}

static _Noreturn void exec_failed(int ep, const char *path, int err)
{
	struct stat st;
	if (err == EACCES && stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		child_fail(ep, SP_NOT_REGULAR, err);
	child_fail(ep, SP_EXEC, err);
}

static const char *env_path(char **envp)
{
	for (char **e = envp; *e; e++)
		if (!strncmp(*e, "PATH=", 5))
			return *e + 5;
	return DEFAULT_PATH;
}

/* execvpe without the /bin/sh fallback: ENOEXEC is reported, not reinterpreted. */
static _Noreturn void exec_program(char **argv, char **envp, int ep)
{
	const char *file = argv[0];
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		exec_failed(ep, file, errno);
	}
	size_t flen = strlen(file);
	if (flen == 0)
		child_fail(ep, SP_EXEC, ENOENT);
	if (flen > NAME_MAX)
		child_fail(ep, SP_EXEC, ENAMETOOLONG);
	char buf[PATH_MAX], denied[PATH_MAX] = "";
	for (const char *p = env_path(envp);; p++) {
		const char *z = strchrnul(p, ':');
		size_t dlen = (size_t)(z - p);
		if (dlen + 1 + flen < sizeof buf) {
			memcpy(buf, p, dlen);
			buf[dlen] = '/';
			memcpy(buf + dlen + (dlen > 0), file, flen + 1);
			execve(buf, argv, envp);
			if (errno == EACCES && !denied[0])
				memcpy(denied, buf, sizeof buf);
			else if (errno != EACCES && errno != ENOENT && errno != ENOTDIR)
				exec_failed(ep, buf, errno);
		}
		if (!*z)
			break;
		p = z;
	}
	if (denied[0])
		exec_failed(ep, denied, EACCES);
	child_fail(ep, SP_EXEC, ENOENT);
}

static void switch_user(const struct user_ids *u, int ep)
{
	/* Unprivileged (test mode) the agent can only "switch" to itself. */
	if (geteuid() != 0 && u->uid == geteuid() && u->gid == getegid())
		return;
	if (setgroups((size_t)u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 ||
	    setuid(u->uid) < 0)
		child_fail(ep, SP_USER, errno);
}

static _Noreturn void child(const struct spawn_req *rq, const int fds[3], int ep)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);

	if (setsid() < 0 || (rq->pty && ioctl(fds[0], TIOCSCTTY, 0) < 0))
		child_fail(ep, SP_SETUP, errno);
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			child_fail(ep, SP_SETUP, errno);

	if (setrlimit(RLIMIT_NOFILE, &child_nofile) < 0)
		child_fail(ep, SP_RLIMIT, errno);
	for (int i = 0; i < rq->nrlimits; i++)
		if (setrlimit(rq->rlimits[i].resource, &rq->rlimits[i].lim) < 0)
			child_fail(ep, SP_RLIMIT, errno);
	if (rq->user)
		switch_user(rq->user, ep);
	if (chdir(rq->cwd ? rq->cwd : "/") < 0)
		child_fail(ep, SP_CWD, errno);
	umask(CHILD_UMASK);
	exec_program(rq->argv, rq->envp, ep);
}

/* ---- parent side ---- */

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		for (int j = i + 1; j < n; j++)
			if (fds[j] == fds[i])
				fds[j] = -1;
		close(fds[i]);
		fds[i] = -1;
	}
}

static int open_pty(const struct spawn_req *rq, int *master, int *slave)
{
	int unlock = 0;
	struct winsize ws = {.ws_row = rq->rows, .ws_col = rq->cols};
	*master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (ioctl(*master, TIOCSPTLCK, &unlock) < 0 || ioctl(*master, TIOCSWINSZ, &ws) < 0 ||
	    (*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		int e = errno;
		close(*master);
		errno = e;
		return -1;
	}
	return 0;
}

/* A pipe whose parent end (index `mine`) is non-blocking; both ends close-on-exec. */
static int parent_pipe(int p[2], int mine)
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fcntl(p[mine], F_SETFL, O_NONBLOCK);
	if (mine == 0)
		fcntl(p[0], F_SETPIPE_SZ, PIPE_SIZE);
	return 0;
}

/* Fills child[3] (its stdin, stdout, stderr) and the parent's ends in res. */
static int prepare_fds(const struct spawn_req *rq, int child[3], struct spawn_res *res)
{
	if (rq->pty) {
		int slave;
		if (open_pty(rq, &res->pty, &slave) < 0)
			return -1;
		child[0] = child[1] = child[2] = slave;
		res->out[0] = res->pty;
		if (rq->stdin_pipe && (res->in = fcntl(res->pty, F_DUPFD_CLOEXEC, 3)) < 0)
			return -1;
		return 0;
	}
	int p[2];
	for (int i = 0; i < 2; i++) {
		if (parent_pipe(p, 0) < 0)
			return -1;
		res->out[i] = p[0];
		child[1 + i] = p[1];
	}
	if (rq->stdin_pipe) {
		if (parent_pipe(p, 1) < 0)
			return -1;
		child[0] = p[0];
		res->in = p[1];
	} else if ((child[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		return -1;
	}
	return 0;
}

static void close_res(struct spawn_res *res)
{
	int fds[] = {res->out[0], res->out[1], res->in, res->pty};
	close_all(fds, 4);
}

int spawn(const struct spawn_req *rq, struct spawn_res *res, struct spawn_err *err)
{
	int child_fds[3] = {-1, -1, -1}, ep[2];
	*res = (struct spawn_res){.pid = -1, .out = {-1, -1}, .in = -1, .pty = -1};
	*err = (struct spawn_err){SP_SETUP, 0};
	if (prepare_fds(rq, child_fds, res) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		err->err = errno;
		close_all(child_fds, 3);
		close_res(res);
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0)
		child(rq, child_fds, ep[1]);
	err->err = errno;
	close_all(child_fds, 3);
	close(ep[1]);
	if (pid < 0) {
		close(ep[0]);
		close_res(res);
		return -1;
	}

	ssize_t r;
	do
		r = read(ep[0], err, sizeof *err);
	while (r < 0 && errno == EINTR);
	close(ep[0]);
	if (r == 0) {
		res->pid = pid;
		return 0;
	}
	if (r != sizeof *err)
		*err = (struct spawn_err){SP_SETUP, EIO};
	waitpid(pid, NULL, 0);
	close_res(res);
	return -1;
}
