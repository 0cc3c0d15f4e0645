/* main.c — entry point and event loop. As PID 1 (getpid() == 1) the agent first does the
 * init duties of init.c; with --channel=PATH it is an ordinary process serving a test
 * harness. Either way one single-threaded poll() loop reaps children, services the
 * open streams and dispatches the host's frames (validated here before any handler
 * sees them). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "channel.h"
#include "exec.h"
#include "frame.h"
#include "fs.h"
#include "identity.h"
#include "info.h"
#include "init.h"
#include "spawn.h"
#include "stream.h"

int agent_is_init;
static int handshaken;

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void vsay(const char *fmt, va_list ap)
{
	char line[600];
	int n = snprintf(line, sizeof line, "corral-agent: ");
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
}

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
}

_Noreturn void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	if (agent_is_init)
		init_poweroff();
	exit(1);
}

int pollset_add(struct pollset *ps, int fd, short events)
{
	ps->fds[ps->n] = (struct pollfd){.fd = fd, .events = events};
	return ps->n++;
}

short pollset_revents(const struct pollset *ps, int idx)
{
	return idx < 0 ? 0 : ps->fds[idx].revents;
}

/* ---- frames from the host ---- */

static void protocol_error(uint32_t id, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ERROR{Protocol} on the frame's stream; an open stream ends with it. */
static void protocol_error(uint32_t id, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct stream *s = id ? stream_find(id) : NULL;
	if (s)
		stream_fail(s, "Protocol", 0, "%s", msg);
	else
		send_error(id, "Protocol", 0, "%s", msg);
}

/* Abandons every stream: running execs are killed, partial writes removed. */
static void reset_session(void)
{
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = stream_at(i);
		if (s)
			stream_abort(s);
	}
	handshaken = 0;
}

static void on_hello(const struct frame *f)
{
	int64_t version;
	if (f->stream != 0) {
		protocol_error(f->stream, "HELLO belongs on stream 0");
		return;
	}
	if (fields_int(f->payload, f->len, 1, &version) != 1 || version != PROTO_VERSION) {
		send_error(0, "Protocol", 0, "unsupported protocol version (want %d)",
			   PROTO_VERSION);
		return;
	}
	if (handshaken)
		reset_session(); /* a new host session on the same channel */
	if (agent_is_init)
		identity_apply(f->payload, f->len);
	handshaken = 1;
	info_hello(0);
}

static void on_open(const struct frame *f)
{
	if (f->stream == 0) {
		protocol_error(0, "frame type 0x%02x needs a nonzero stream id", f->type);
		return;
	}
	struct stream *s = stream_find(f->stream);
	if (s) {
		stream_fail(s, "Protocol", 0, "stream %u is already open", f->stream);
		return;
	}
	if (f->type == T_EXEC)
		exec_start(f->stream, f->payload, f->len);
	else
		fs_start(f->stream, f->payload, f->len);
}

/* Frames addressed to an open stream. A stream the agent does not know may just have
 * ended (the host's WINDOW or STDIN can cross our EXIT): those frames are ignored.
 * -1: DATA that a write cannot take yet (see fs_data). */
static int on_stream_frame(const struct frame *f)
{
	struct stream *s = stream_find(f->stream);
	if (!s) {
		if (f->stream == 0)
			protocol_error(0, "frame type 0x%02x needs a stream", f->type);
		return 0;
	}
	int eof = f->flags & FLAG_EOF;
	int64_t inc;
	switch (f->type) {
	case T_STDIN:
	case T_SIGNAL:
	case T_RESIZE:
		if (s->kind != S_EXEC)
			protocol_error(f->stream, "frame type 0x%02x on a non-exec stream", f->type);
		else if (f->type == T_STDIN)
			exec_stdin(s, f->payload, f->len, eof);
		else if (f->type == T_SIGNAL)
			exec_signal(s, f->payload, f->len);
		else
			exec_resize(s, f->payload, f->len);
		break;
	case T_DATA:
		if (s->kind != S_WRITE)
			protocol_error(f->stream, "DATA on a stream that is not an FS write");
		else
			return fs_data(s, f->payload, f->len, eof);
		break;
	case T_WINDOW:
		if (fields_int(f->payload, f->len, 1, &inc) != 1 || flow_grant(s, inc) < 0)
			protocol_error(f->stream, "bad WINDOW increment");
		break;
	case T_CANCEL:
		stream_fail(s, "Cancelled", 0, "cancelled");
		break;
	}
	return 0;
}

static void on_shutdown(void)
{
	reset_session();
	if (agent_is_init)
		init_shutdown();
	exit(0);
}

static int host_type(uint8_t t)
{
	switch (t) {
	case T_HELLO:
	case T_INFO:
	case T_EXEC:
	case T_STDIN:
	case T_SIGNAL:
	case T_RESIZE:
	case T_WINDOW:
	case T_CANCEL:
	case T_FS:
	case T_DATA:
	case T_SHUTDOWN:
		return 1;
	}
	return 0;
}

/* Checks shared by every frame; 0 when the frame is sound, else ERROR{Protocol} is sent. */
static int check_frame(const struct frame *f)
{
	int data = f->type == T_STDIN || f->type == T_DATA;
	if (!host_type(f->type))
		protocol_error(f->stream, "unexpected frame type 0x%02x", f->type);
	else if (f->reserved || (f->flags & ~FLAG_EOF))
		protocol_error(f->stream, "reserved header bits set");
	else if (data && f->len > DATA_MAX_PAYLOAD)
		protocol_error(f->stream, "data frame over %u bytes", DATA_MAX_PAYLOAD);
	else if (!data && (f->flags & FLAG_EOF))
		protocol_error(f->stream, "EOF flag on frame type 0x%02x", f->type);
	else if (!data && fields_check(f->payload, f->len) < 0)
		protocol_error(f->stream, "malformed field list");
	else if (!handshaken && f->type != T_HELLO)
		protocol_error(f->stream, "HELLO first");
	else
		return 0;
	return -1;
}

static int on_frame(const struct frame *f)
{
	if (check_frame(f) < 0)
		return 0;
	switch (f->type) {
	case T_HELLO:
		on_hello(f);
		break;
	case T_INFO:
		info_reply(f->stream);
		break;
	case T_EXEC:
	case T_FS:
		on_open(f);
		break;
	case T_STDIN:
	case T_SIGNAL:
	case T_RESIZE:
	case T_DATA:
	case T_WINDOW:
	case T_CANCEL:
		return on_stream_frame(f);
	case T_SHUTDOWN:
		on_shutdown();
		break;
	}
	return 0;
}

/* Where a DATA frame's payload can be read straight into (see fs_place); NULL for any
 * frame on_frame would not hand to a write as it is. */
static unsigned char *place_payload(const struct frame *f)
{
	if (f->type != T_DATA || f->len > DATA_MAX_PAYLOAD || !handshaken)
		return NULL;
	struct stream *s = stream_find(f->stream);
	return s && s->kind == S_WRITE ? fs_place(s, f->len) : NULL;
}

/* ---- the loop ---- */

static void reap(int sigfd)
{
	struct signalfd_siginfo si[8];
	while (read(sigfd, si, sizeof si) > 0)
		;
	pid_t pid;
	int status;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		exec_reaped(pid, status);
}

static void on_channel(enum chan_event ev)
{
	static int ready;
	switch (ev) {
	case CH_OPENED:
		if (!ready)
			say("ready");
		ready = 1;
		break;
	case CH_EOF:
		if (handshaken)
			say("host disconnected");
		reset_session();
		if (!agent_is_init)
			exit(0);
		break;
	case CH_CORRUPT:
		reset_session();
		break;
	case CH_NONE:
		break;
	}
}

static _Noreturn void serve(int sigfd)
{
	static struct pollset ps;
	for (;;) {
		ps.n = 0;
		int si = pollset_add(&ps, sigfd, POLLIN);
		chan_poll_add(&ps);
		fs_io_poll_add(&ps);
		int64_t deadline = chan_deadline();
		for (int i = 0; i < MAX_STREAMS; i++) {
			struct stream *s = stream_at(i);
			if (!s)
				continue;
			int64_t d = -1;
			if (s->kind == S_EXEC)
				d = exec_poll_add(s, &ps);
			else
				fs_poll_add(s, &ps);
			if (d >= 0 && (deadline < 0 || d < deadline))
				deadline = d;
		}
		int timeout = -1;
		if (deadline >= 0) {
			int64_t wait = deadline - now_ms();
			timeout = wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
		}
		if (poll(ps.fds, (nfds_t)ps.n, timeout) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));

		if (pollset_revents(&ps, si))
			reap(sigfd);
		for (int i = 0; i < MAX_STREAMS; i++) {
			struct stream *s = stream_at(i);
			if (s && s->kind == S_EXEC)
				exec_service(s, &ps);
			else if (s)
				fs_service(s, &ps);
		}
		fs_io_service(&ps); /* before the channel: a held DATA frame may now go in */
		on_channel(chan_service(&ps, on_frame, place_payload));
	}
}

/* Test mode may start with fds 0-2 closed; pipes must never land on them. */
static void ensure_stdio(void)
{
	struct stat st;
	for (int fd = 0; fd < 3; fd++)
		if (fstat(fd, &st) < 0 && open("/dev/null", O_RDWR) != fd)
			die("cannot open /dev/null");
}

int main(int argc, char **argv)
{
	const char *channel = NULL;
	agent_is_init = getpid() == 1;
	if (agent_is_init)
		init_early();
	for (int i = 1; i < argc && !agent_is_init; i++) {
		if (!strncmp(argv[i], "--channel=", 10) && argv[i][10]) {
			channel = argv[i] + 10;
		} else if (!strcmp(argv[i], "--version")) {
			printf("corral-agent %s\n", AGENT_VERSION);
			return 0;
		} else {
			fprintf(stderr, "usage: corral-agent --channel=PATH (unix socket or char device)\n"
					"       (as PID 1 it needs no arguments)\n");
			return 2;
		}
	}
	if (!agent_is_init && !channel) {
		fprintf(stderr, "corral-agent: not PID 1: --channel=PATH is required\n");
		return 2;
	}
	ensure_stdio();
	umask(0); /* FS modes are exact; children get CHILD_UMASK (spawn.c) */
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		die("signalfd: %s", strerror(errno));
	spawn_setup();
	chan_configure(channel);
	if (agent_is_init)
		init_system();
	serve(sigfd);
}
