/* frame.h — the wire format of docs/protocol.md: frame header, field lists, and the
 * bounded decoder/encoder every other module uses. No I/O here. */
#ifndef CORRAL_FRAME_H
#define CORRAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 2
#define FRAME_HDR 12
#define FRAME_MAX_PAYLOAD (1u << 20)
#define DATA_MAX_PAYLOAD (256u << 10)
#define WINDOW_SIZE ((int64_t)8 << 20)
#define FLAG_EOF 0x01

enum frame_type {
	T_HELLO = 0x01,
	T_INFO = 0x02,
	T_INFO_OK = 0x03,
	T_EXEC = 0x10,
	T_STARTED = 0x11,
	T_STDIN = 0x12,
	T_STDOUT = 0x13,
	T_STDERR = 0x14,
	T_EXIT = 0x15,
	T_SIGNAL = 0x16,
	T_RESIZE = 0x17,
	T_WINDOW = 0x18,
	T_CANCEL = 0x19,
	T_ERROR = 0x1F,
	T_FS = 0x20,
	T_DATA = 0x21,
	T_DONE = 0x22,
	T_ENTRIES = 0x23,
	T_SHUTDOWN = 0x30,
};

struct frame {
	uint32_t len;
	uint32_t stream;
	uint8_t type;
	uint8_t flags;
	uint16_t reserved;
	const unsigned char *payload;
};

/* Decodes the header at p (FRAME_HDR bytes). Returns -1 when the length is impossible,
 * which means the byte stream cannot be resynchronised. */
int frame_header(const unsigned char *p, struct frame *f);

struct field {
	uint16_t tag;
	uint32_t len;
	const unsigned char *val;
};

/* Returns 0 when the payload is a well-formed field list (every value inside it). */
int fields_check(const unsigned char *p, size_t n);

/* Iterates over a payload that passed fields_check. */
struct field_iter {
	const unsigned char *p;
	size_t n, off;
};
void fields_begin(struct field_iter *it, const unsigned char *p, size_t n);
int fields_next(struct field_iter *it, struct field *f); /* 1 = got one, 0 = end */

/* The first field with this tag, or 0 when absent. */
int fields_find(const unsigned char *p, size_t n, uint16_t tag, struct field *f);

/* An 8-byte signed integer value; -1 when the value has another length. */
int field_int(const struct field *f, int64_t *out);

/* Reads the optional integer field `tag`: 0 absent (out untouched), 1 present, -1 bad. */
int fields_int(const unsigned char *p, size_t n, uint16_t tag, int64_t *out);

/* Builds one frame into caller memory; any overflow is sticky and reported by fb_finish. */
struct fbuf {
	unsigned char *p;
	size_t cap, len;
	int overflow;
};
void fb_frame(struct fbuf *b, unsigned char *mem, size_t cap, uint32_t stream, uint8_t type);
void fb_bytes(struct fbuf *b, uint16_t tag, const void *v, size_t n);
void fb_str(struct fbuf *b, uint16_t tag, const char *s);
void fb_int(struct fbuf *b, uint16_t tag, int64_t v);
size_t fb_nest_begin(struct fbuf *b, uint16_t tag); /* returns a mark for nest_end/rollback */
void fb_nest_end(struct fbuf *b, size_t mark);
void fb_rollback(struct fbuf *b, size_t mark); /* forget everything from mark, overflow too */
size_t fb_finish(struct fbuf *b);               /* total frame length, 0 on overflow */

/* Writes a data-frame header in front of n payload bytes already at mem + FRAME_HDR. */
void frame_put_header(unsigned char *mem, uint32_t stream, uint8_t type, uint8_t flags,
		      uint32_t n);

#endif
