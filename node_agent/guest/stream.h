/* stream.h — the table of open streams (execs and file transfers), their state, and the
 * per-stream, per-direction flow-control windows of docs/protocol.md. */
#ifndef CORRAL_STREAM_H
#define CORRAL_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum stream_kind { S_EXEC, S_READ, S_WRITE };

struct bytebuf {
	unsigned char *d;
	size_t off, len, cap;
};

struct exec_state {
	pid_t pid;             /* also the process group id: the child calls setsid */
	int out[2];            /* stdout, stderr read ends (PTY master as stdout); -1 closed */
	int in;                /* stdin write end; -1 when not open or closed */
	int pty;               /* PTY master (same file as out[0]), -1 without PTY */
	struct bytebuf stdin_buf;
	int stdin_eof;         /* the host sent EOF on STDIN */
	int veof_pending;      /* PTY: the terminal's EOF character is still to be written */
	int exited, status, timed_out;
	int64_t forked_ns, run_ns; /* CLOCK_MONOTONIC before fork; fork-to-reap time */
	int64_t deadline;      /* ms of the timeout, 0 = none */
	int64_t quiet_since;   /* ms since which no output was read after the exit */
	int pi_out[2], pi_in;  /* indices in this iteration's poll set, -1 = not polled */
};

struct read_state {
	int fd;
	int64_t size;
	int pi;
};

struct stage; /* fs.c */

struct write_state {
	int fd;
	char *tmp, *path;
	int64_t size;         /* bytes received */
	int direct;           /* staged and written asynchronously; 0: buffered (fs.c) */
	struct stage *stage;  /* the stage being filled; NULL while all are in flight */
	size_t staged;        /* bytes in it */
	int64_t offset;       /* its place in the file */
	int inflight;         /* stages being written */
	int64_t withheld;     /* credit held back while every stage is in flight */
	int eof;
};

struct stream {
	int used;
	uint32_t id;
	enum stream_kind kind;
	int64_t credit;   /* guest→host data bytes we may still send */
	int64_t unacked;  /* host→guest data bytes received and not credited back yet */
	int64_t consumed; /* the part of unacked already consumed */
	union {
		struct exec_state ex;
		struct read_state rd;
		struct write_state wr;
	};
};

struct stream *stream_find(uint32_t id);
/* A fresh stream with a full send window, or NULL when the table is full. */
struct stream *stream_new(uint32_t id, enum stream_kind kind);
void stream_free(struct stream *s);
/* Slot i of the table, or NULL when unused (for iteration up to MAX_STREAMS). */
struct stream *stream_at(int i);

/* Accounts n received data bytes; -1 when the host overran the window. */
int flow_receive(struct stream *s, size_t n);
/* n received bytes were consumed; credits them back when enough piled up or drained. */
void flow_consume(struct stream *s, size_t n, int drained);
/* A WINDOW increment from the host; -1 when it is not positive or overfills the window. */
int flow_grant(struct stream *s, int64_t inc);
/* How many bytes one data frame may carry now (0 when the window is exhausted). */
size_t flow_chunk(const struct stream *s);

/* Tears the stream down without a reply (kills an exec's process group, removes a
 * half-written file) and frees it. */
void stream_abort(struct stream *s);
/* Tears the stream down and ends it with ERROR{kind, errno, message}. */
void stream_fail(struct stream *s, const char *kind, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void send_error(uint32_t id, const char *kind, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
