/* stream.c — the stream table, window accounting, and the ERROR/WINDOW replies that any
 * stream may need. */
#include "stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "channel.h"
#include "exec.h"
#include "frame.h"
#include "fs.h"

/* Credit is returned in batches of this size, or as soon as the stream's input drained. */
#define CREDIT_BATCH (256 << 10)

static struct stream table[MAX_STREAMS];

struct stream *stream_find(uint32_t id)
{
	for (int i = 0; i < MAX_STREAMS; i++)
		if (table[i].used && table[i].id == id)
			return &table[i];
	return NULL;
}

struct stream *stream_new(uint32_t id, enum stream_kind kind)
{
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = &table[i];
		if (s->used)
			continue;
		memset(s, 0, sizeof *s);
		s->used = 1;
		s->id = id;
		s->kind = kind;
		s->credit = WINDOW_SIZE;
		return s;
	}
	return NULL;
}

void stream_free(struct stream *s)
{
	s->used = 0;
}

struct stream *stream_at(int i)
{
	return table[i].used ? &table[i] : NULL;
}

int flow_receive(struct stream *s, size_t n)
{
	if ((int64_t)n > WINDOW_SIZE - s->unacked)
		return -1;
	s->unacked += (int64_t)n;
	return 0;
}

void flow_consume(struct stream *s, size_t n, int drained)
{
	s->consumed += (int64_t)n;
	if (s->consumed < CREDIT_BATCH && !(drained && s->consumed > 0))
		return;
	unsigned char mem[64];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, s->id, T_WINDOW);
	fb_int(&b, 1, s->consumed);
	chan_send(mem, fb_finish(&b));
	s->unacked -= s->consumed;
	s->consumed = 0;
}

int flow_grant(struct stream *s, int64_t inc)
{
	if (inc <= 0 || inc > WINDOW_SIZE - s->credit)
		return -1;
	s->credit += inc;
	return 0;
}

size_t flow_chunk(const struct stream *s)
{
	return s->credit < (int64_t)DATA_MAX_PAYLOAD ? (size_t)s->credit : DATA_MAX_PAYLOAD;
}

void stream_abort(struct stream *s)
{
	if (s->kind == S_EXEC)
		exec_abort(s);
	else
		fs_abort(s);
}

#define ERROR_MSG_MAX 512

static void send_error_va(uint32_t id, const char *kind, int err, const char *fmt, va_list ap)
{
	char msg[ERROR_MSG_MAX];
	vsnprintf(msg, sizeof msg, fmt, ap);
	unsigned char mem[FRAME_HDR + 64 + ERROR_MSG_MAX];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, id, T_ERROR);
	fb_str(&b, 1, kind);
	fb_int(&b, 2, err);
	fb_str(&b, 3, msg);
	chan_send(mem, fb_finish(&b));
}

void stream_fail(struct stream *s, const char *kind, int err, const char *fmt, ...)
{
	/* Format first: the arguments may point into the stream's state. */
	char msg[ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	uint32_t id = s->id;
	stream_abort(s);
	send_error(id, kind, err, "%s", msg);
}

void send_error(uint32_t id, const char *kind, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error_va(id, kind, err, fmt, ap);
	va_end(ap);
}
