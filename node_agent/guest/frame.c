/* frame.c — decoding and encoding of frames and field lists (docs/protocol.md).
 * Every length read from the wire is checked against the bytes actually present. */
#include "frame.h"

#include <string.h>

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

int frame_header(const unsigned char *p, struct frame *f)
{
	f->len = get32(p);
	f->stream = get32(p + 4);
	f->type = p[8];
	f->flags = p[9];
	f->reserved = (uint16_t)(p[10] << 8 | p[11]);
	f->payload = p + FRAME_HDR;
	return f->len > FRAME_MAX_PAYLOAD ? -1 : 0;
}

void frame_put_header(unsigned char *mem, uint32_t stream, uint8_t type, uint8_t flags,
		      uint32_t n)
{
	put32(mem, n);
	put32(mem + 4, stream);
	mem[8] = type;
	mem[9] = flags;
	mem[10] = mem[11] = 0;
}

int fields_check(const unsigned char *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		if (n - off < 6)
			return -1;
		uint32_t len = get32(p + off + 2);
		if (len > n - off - 6)
			return -1;
		off += 6 + (size_t)len;
	}
	return 0;
}

void fields_begin(struct field_iter *it, const unsigned char *p, size_t n)
{
	it->p = p;
	it->n = n;
	it->off = 0;
}

int fields_next(struct field_iter *it, struct field *f)
{
	/* Bounds are re-checked so a caller that skipped fields_check cannot overrun. */
	if (it->n - it->off < 6)
		return 0;
	const unsigned char *q = it->p + it->off;
	uint32_t len = get32(q + 2);
	if (len > it->n - it->off - 6)
		return 0;
	f->tag = (uint16_t)(q[0] << 8 | q[1]);
	f->len = len;
	f->val = q + 6;
	it->off += 6 + (size_t)len;
	return 1;
}

int fields_find(const unsigned char *p, size_t n, uint16_t tag, struct field *f)
{
	struct field_iter it;
	fields_begin(&it, p, n);
	while (fields_next(&it, f))
		if (f->tag == tag)
			return 1;
	return 0;
}

int field_int(const struct field *f, int64_t *out)
{
	if (f->len != 8)
		return -1;
	uint64_t v = (uint64_t)get32(f->val) << 32 | get32(f->val + 4);
	*out = (int64_t)v;
	return 0;
}

int fields_int(const unsigned char *p, size_t n, uint16_t tag, int64_t *out)
{
	struct field f;
	if (!fields_find(p, n, tag, &f))
		return 0;
	return field_int(&f, out) < 0 ? -1 : 1;
}

void fb_frame(struct fbuf *b, unsigned char *mem, size_t cap, uint32_t stream, uint8_t type)
{
	b->p = mem;
	b->cap = cap < FRAME_HDR + FRAME_MAX_PAYLOAD ? cap : FRAME_HDR + FRAME_MAX_PAYLOAD;
	b->len = FRAME_HDR;
	b->overflow = 0;
	frame_put_header(mem, stream, type, 0, 0);
}

static unsigned char *fb_room(struct fbuf *b, size_t n)
{
	if (b->overflow || n > b->cap - b->len) {
		b->overflow = 1;
		return NULL;
	}
	unsigned char *q = b->p + b->len;
	b->len += n;
	return q;
}

void fb_bytes(struct fbuf *b, uint16_t tag, const void *v, size_t n)
{
	if (n > FRAME_MAX_PAYLOAD) {
		b->overflow = 1;
		return;
	}
	unsigned char *q = fb_room(b, 6 + n);
	if (!q)
		return;
	q[0] = tag >> 8;
	q[1] = tag;
	put32(q + 2, (uint32_t)n);
	if (n)
		memcpy(q + 6, v, n);
}

void fb_str(struct fbuf *b, uint16_t tag, const char *s)
{
	fb_bytes(b, tag, s, strlen(s));
}

void fb_int(struct fbuf *b, uint16_t tag, int64_t v)
{
	unsigned char q[8];
	put32(q, (uint32_t)((uint64_t)v >> 32));
	put32(q + 4, (uint32_t)v);
	fb_bytes(b, tag, q, 8);
}

size_t fb_nest_begin(struct fbuf *b, uint16_t tag)
{
	size_t mark = b->len;
	fb_bytes(b, tag, NULL, 0);
	return mark;
}

void fb_nest_end(struct fbuf *b, size_t mark)
{
	if (!b->overflow)
		put32(b->p + mark + 2, (uint32_t)(b->len - mark - 6));
}

void fb_rollback(struct fbuf *b, size_t mark)
{
	b->len = mark;
	b->overflow = 0;
}

size_t fb_finish(struct fbuf *b)
{
	if (b->overflow)
		return 0;
	put32(b->p, (uint32_t)(b->len - FRAME_HDR));
	return b->len;
}
