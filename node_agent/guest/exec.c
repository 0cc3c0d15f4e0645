/* exec.c — EXEC streams on the agent's side. Parses the request, spawns the child (see
 * spawn.c), then moves bytes: child output to STDOUT/STDERR frames while the host's
 * window has credit, STDIN frames into the child (buffered up to the window, credit
 * returned as the child consumes). EXIT goes out once the child was reaped and its
 * output reached EOF, or stayed quiet for QUIET_MS (a background grandchild may hold
 * the pipes open). */
#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "frame.h"
#include "spawn.h"

#define QUIET_MS 200
#define MAX_TIMEOUT_MS ((int64_t)1 << 40) /* ~35 years: keeps deadlines from overflowing */
#define STDIN_BUF_MIN (64 << 10)
#define DEFAULT_ROWS 24
#define DEFAULT_COLS 80

enum exec_tag {
	E_ARGV = 1,
	E_ENV = 2,
	E_CWD = 3,
	E_USER = 4,
	E_TIMEOUT = 5,
	E_ROWS = 6,
	E_COLS = 7,
	E_RLIMIT = 8,
	E_STDIN = 9,
};

struct exec_req {
	struct spawn_req sp;
	struct user_ids user;
	char *arena; /* NUL-terminated copies of every string field */
	struct spawn_rlimit *rlimits;
	int64_t timeout;
	const char *kind; /* set when the request is refused */
	char msg[256];
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *copy_str(char **arena, const struct field *f)
{
	if (memchr(f->val, 0, f->len))
		return NULL;
	char *s = *arena;
	memcpy(s, f->val, f->len);
	s[f->len] = 0;
	*arena += f->len + 1;
	return s;
}

static int refuse(struct exec_req *rq, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct exec_req *rq, const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rq->msg, sizeof rq->msg, fmt, ap);
	va_end(ap);
	rq->kind = kind;
	return -1;
}

static int parse_string(struct exec_req *rq, const struct field *f, char **arena, int *argc,
			int *envc, int *nrl)
{
	char *s = copy_str(arena, f);
	if (!s)
		return refuse(rq, "InvalidArgument", "field %u contains a NUL byte", f->tag);
	switch (f->tag) {
	case E_ARGV:
		rq->sp.argv[(*argc)++] = s;
		break;
	case E_ENV:
		if (!strchr(s, '='))
			return refuse(rq, "InvalidArgument", "env entry without '=' (field %u)", f->tag);
		rq->sp.envp[(*envc)++] = s;
		break;
	case E_CWD:
		rq->sp.cwd = s;
		break;
	case E_USER:
		if (user_resolve(s, &rq->user, rq->msg, sizeof rq->msg) < 0) {
			rq->kind = "BadUser";
			return -1;
		}
		rq->sp.user = &rq->user;
		break;
	case E_RLIMIT:
		if (spawn_parse_rlimit(s, &rq->rlimits[(*nrl)++]) < 0)
			return refuse(rq, "InvalidArgument", "bad rlimit (field %u): want NAME=soft:hard",
				      f->tag);
		break;
	}
	return 0;
}

static int parse_int(struct exec_req *rq, const struct field *f)
{
	int64_t v;
	if (field_int(f, &v) < 0)
		return refuse(rq, "Protocol", "field %u is not an 8-byte integer", f->tag);
	int64_t max = INT64_MAX;
	if (f->tag == E_ROWS || f->tag == E_COLS)
		max = 65535;
	else if (f->tag == E_TIMEOUT)
		max = MAX_TIMEOUT_MS;
	if (v < 0 || v > max)
		return refuse(rq, "InvalidArgument", "field %u is out of range", f->tag);
	switch (f->tag) {
	case E_TIMEOUT:
		rq->timeout = v;
		break;
	case E_ROWS:
		rq->sp.pty = 1;
		rq->sp.rows = (unsigned short)v;
		break;
	case E_COLS:
		rq->sp.cols = (unsigned short)v;
		break;
	case E_STDIN:
		rq->sp.stdin_pipe = v == 1;
		break;
	}
	return 0;
}

static int parse_request(const unsigned char *p, size_t n, struct exec_req *rq)
{
	struct field_iter it;
	struct field f;
	size_t nfields = 0;
	int argc = 0, envc = 0, nrl = 0;
	fields_begin(&it, p, n);
	while (fields_next(&it, &f)) {
		nfields++;
		argc += f.tag == E_ARGV;
		envc += f.tag == E_ENV;
		nrl += f.tag == E_RLIMIT;
	}
	rq->arena = malloc(n + nfields + 1);
	rq->sp.argv = calloc((size_t)argc + 1, sizeof(char *));
	rq->sp.envp = calloc((size_t)envc + 1, sizeof(char *));
	rq->rlimits = calloc((size_t)nrl + 1, sizeof *rq->rlimits);
	if (!rq->arena || !rq->sp.argv || !rq->sp.envp || !rq->rlimits)
		return refuse(rq, "Io", "out of memory");
	rq->sp.rlimits = rq->rlimits;
	rq->sp.nrlimits = nrl;
	rq->sp.rows = DEFAULT_ROWS;
	rq->sp.cols = DEFAULT_COLS;
	if (argc == 0)
		return refuse(rq, "InvalidArgument", "argv (field %u) is empty", E_ARGV);

	char *arena = rq->arena;
	argc = envc = nrl = 0;
	fields_begin(&it, p, n);
	while (fields_next(&it, &f)) {
		int r = 0;
		switch (f.tag) {
		case E_ARGV:
		case E_ENV:
		case E_CWD:
		case E_USER:
		case E_RLIMIT:
			r = parse_string(rq, &f, &arena, &argc, &envc, &nrl);
			break;
		case E_TIMEOUT:
		case E_ROWS:
		case E_COLS:
		case E_STDIN:
			r = parse_int(rq, &f);
			break;
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

static void free_request(struct exec_req *rq)
{
	free(rq->arena);
	free(rq->sp.argv);
	free(rq->sp.envp);
	free(rq->rlimits);
}

static const char *exec_errno_kind(int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		return "NotFound";
	case EACCES:
	case EPERM:
		return "PermissionDenied";
	case ENOEXEC:
	case EISDIR:
	case ELIBBAD:
		return "NotExecutable";
	case E2BIG:
	case EINVAL:
	case ENAMETOOLONG:
		return "InvalidArgument";
	default:
		return "Io";
	}
}

static void spawn_failed(uint32_t id, const struct exec_req *rq, const struct spawn_err *e)
{
	const char *prog = rq->sp.argv[0], *why = strerror(e->err);
	switch (e->stage) {
	case SP_RLIMIT:
		send_error(id, e->err == EPERM ? "PermissionDenied" : "InvalidArgument", e->err,
			   "setrlimit: %s", why);
		break;
	case SP_USER:
		send_error(id, "BadUser", e->err, "cannot switch user: %s", why);
		break;
	case SP_CWD:
		send_error(id, "BadCwd", e->err, "cannot change directory to %.300s: %s",
			   rq->sp.cwd ? rq->sp.cwd : "/", why);
		break;
	case SP_NOT_REGULAR:
		send_error(id, "NotExecutable", e->err, "%.300s: not a regular file", prog);
		break;
	case SP_EXEC:
		send_error(id, exec_errno_kind(e->err), e->err, "%.300s: %s", prog, why);
		break;
	default:
		send_error(id, "Io", e->err, "cannot start %.300s: %s", prog, why);
	}
}

static void send_started(uint32_t id, pid_t pid)
{
	unsigned char mem[64];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, id, T_STARTED);
	fb_int(&b, 1, pid);
	chan_send(mem, fb_finish(&b));
}

void exec_start(uint32_t id, const unsigned char *p, size_t n)
{
	struct exec_req rq = {0};
	if (parse_request(p, n, &rq) < 0) {
		send_error(id, rq.kind, 0, "%s", rq.msg);
		free_request(&rq);
		return;
	}
	struct stream *s = stream_new(id, S_EXEC);
	if (!s) {
		send_error(id, "Io", EMFILE, "too many concurrent streams");
		free_request(&rq);
		return;
	}
	struct spawn_res res;
	struct spawn_err err;
	int64_t forked_ns = now_ns();
	if (spawn(&rq.sp, &res, &err) < 0) {
		stream_free(s);
		spawn_failed(id, &rq, &err);
		free_request(&rq);
		return;
	}
	struct exec_state *x = &s->ex;
	x->pid = res.pid;
	x->out[0] = res.out[0];
	x->out[1] = res.out[1];
	x->in = res.in;
	x->pty = res.pty;
	x->forked_ns = forked_ns;
	x->deadline = rq.timeout ? now_ms() + rq.timeout : 0;
	free_request(&rq);
	send_started(id, res.pid);
}

/* ---- the running exec ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_out(struct exec_state *x, int k)
{
	if (x->out[k] == x->pty)
		x->pty = -1; /* the master is out[0]: RESIZE has nothing left to resize */
	close_fd(&x->out[k]);
}

static void release(struct stream *s)
{
	struct exec_state *x = &s->ex;
	close_out(x, 0);
	close_out(x, 1);
	close_fd(&x->in);
	free(x->stdin_buf.d);
	stream_free(s);
}

void exec_abort(struct stream *s)
{
	if (!s->ex.exited && s->ex.pid > 0)
		kill(-s->ex.pid, SIGKILL);
	release(s);
}

static void send_exit(struct stream *s)
{
	const struct exec_state *x = &s->ex;
	unsigned char mem[128];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, s->id, T_EXIT);
	if (WIFEXITED(x->status))
		fb_int(&b, 1, WEXITSTATUS(x->status));
	if (WIFSIGNALED(x->status))
		fb_int(&b, 2, WTERMSIG(x->status));
	if (x->timed_out)
		fb_int(&b, 3, 1);
	fb_int(&b, 4, x->run_ns);
	chan_send(mem, fb_finish(&b));
	release(s);
}

void exec_reaped(pid_t pid, int status)
{
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = stream_at(i);
		if (s && s->kind == S_EXEC && s->ex.pid == pid && !s->ex.exited) {
			s->ex.exited = 1;
			s->ex.status = status;
			s->ex.run_ns = now_ns() - s->ex.forked_ns;
			s->ex.quiet_since = now_ms();
			return;
		}
	}
}

static void read_output(struct stream *s, int k)
{
	struct exec_state *x = &s->ex;
	size_t want = flow_chunk(s);
	if (!want)
		return;
	ssize_t r = read(x->out[k], chan_data_buf() + FRAME_HDR, want);
	if (r > 0) {
		s->credit -= r;
		chan_send_data(s->id, k ? T_STDERR : T_STDOUT, 0, (size_t)r);
		if (x->exited)
			x->quiet_since = now_ms();
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_out(x, k); /* EOF, or EIO from a PTY whose terminal side is gone */
	}
}

/* PTY: EOF on stdin is the terminal's EOF character, as if typed. */
static int write_veof(struct exec_state *x)
{
	struct termios t;
	unsigned char c = tcgetattr(x->in, &t) == 0 ? t.c_cc[VEOF] : 4;
	return write(x->in, &c, 1) < 0 && errno == EAGAIN ? -1 : 0;
}

static void pump_stdin(struct stream *s)
{
	struct exec_state *x = &s->ex;
	struct bytebuf *b = &x->stdin_buf;
	size_t done = 0;
	while (x->in >= 0 && b->len > 0) {
		ssize_t w = write(x->in, b->d + b->off, b->len);
		if (w > 0) {
			b->off += (size_t)w;
			b->len -= (size_t)w;
			done += (size_t)w;
		} else if (errno == EAGAIN) {
			break;
		} else if (errno != EINTR) {
			done += b->len; /* the child closed its stdin: what is left is dropped */
			b->len = 0;
			close_fd(&x->in);
		}
	}
	if (b->len == 0)
		b->off = 0;
	if (done)
		flow_consume(s, done, b->len == 0);
	if (x->in >= 0 && b->len == 0 && x->stdin_eof) {
		if (x->veof_pending && write_veof(x) < 0)
			return;
		x->veof_pending = 0;
		close_fd(&x->in);
	}
}

static int buf_append(struct bytebuf *b, const unsigned char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (b->off && b->off + b->len + n > b->cap) {
		memmove(b->d, b->d + b->off, b->len);
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : STDIN_BUF_MIN;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *d = realloc(b->d, cap);
		if (!d)
			return -1;
		b->d = d;
		b->cap = cap;
	}
	memcpy(b->d + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

void exec_stdin(struct stream *s, const unsigned char *p, size_t n, int eof)
{
	struct exec_state *x = &s->ex;
	if (x->stdin_eof) {
		stream_fail(s, "Protocol", 0, "STDIN after EOF");
		return;
	}
	if (flow_receive(s, n) < 0) {
		stream_fail(s, "Protocol", 0, "STDIN beyond the window");
		return;
	}
	if (x->in < 0) {
		flow_consume(s, n, 1); /* no stdin pipe, or the child closed it */
	} else if (buf_append(&x->stdin_buf, p, n) < 0) {
		stream_fail(s, "Io", ENOMEM, "out of memory for stdin");
		return;
	}
	if (eof) {
		x->stdin_eof = 1;
		x->veof_pending = x->pty >= 0;
	}
	pump_stdin(s);
}

void exec_signal(struct stream *s, const unsigned char *p, size_t n)
{
	int64_t sig;
	if (fields_int(p, n, 1, &sig) != 1 || sig < 1 || sig >= NSIG) {
		stream_fail(s, "Protocol", 0, "SIGNAL needs a signal number (field 1)");
		return;
	}
	kill(-s->ex.pid, (int)sig);
}

void exec_resize(struct stream *s, const unsigned char *p, size_t n)
{
	int64_t rows, cols;
	if (fields_int(p, n, 1, &rows) != 1 || fields_int(p, n, 2, &cols) != 1 || rows < 0 ||
	    rows > 65535 || cols < 0 || cols > 65535) {
		stream_fail(s, "Protocol", 0, "RESIZE needs rows and cols (fields 1 and 2)");
		return;
	}
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	if (s->ex.pty >= 0)
		ioctl(s->ex.pty, TIOCSWINSZ, &ws);
}

int64_t exec_poll_add(struct stream *s, struct pollset *ps)
{
	struct exec_state *x = &s->ex;
	for (int k = 0; k < 2; k++)
		x->pi_out[k] =
			x->out[k] >= 0 && s->credit > 0 ? pollset_add(ps, x->out[k], POLLIN) : -1;
	int want_in = x->in >= 0 && (x->stdin_buf.len || x->veof_pending);
	x->pi_in = want_in ? pollset_add(ps, x->in, POLLOUT) : -1;

	if (!x->exited)
		return x->deadline && !x->timed_out ? x->deadline : -1;
	if ((x->out[0] >= 0 || x->out[1] >= 0) && s->credit > 0)
		return x->quiet_since + QUIET_MS;
	return -1;
}

void exec_service(struct stream *s, const struct pollset *ps)
{
	struct exec_state *x = &s->ex;
	if (pollset_revents(ps, x->pi_in))
		pump_stdin(s);
	for (int k = 0; k < 2; k++)
		if (pollset_revents(ps, x->pi_out[k]))
			read_output(s, k);

	int64_t now = now_ms();
	if (!x->exited && x->deadline && !x->timed_out && now >= x->deadline) {
		kill(-x->pid, SIGKILL);
		x->timed_out = 1;
	}
	if (!x->exited)
		return;
	if (x->out[0] >= 0 || x->out[1] >= 0) {
		if (s->credit == 0)
			x->quiet_since = now; /* not silent: blocked on the host's window */
		if (now - x->quiet_since < QUIET_MS)
			return;
	}
	send_exit(s);
}
