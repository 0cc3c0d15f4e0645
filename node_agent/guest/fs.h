/* fs.h — FS streams: read, write, list, stat, mkdir, remove, rename. */
#ifndef CORRAL_FS_H
#define CORRAL_FS_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "stream.h"

/* Runs an FS request; read and write stay open as streams, the rest answer at once. */
void fs_start(uint32_t id, const unsigned char *p, size_t n);
/* A DATA frame for a write stream; -1 when it cannot be taken yet (every stage of the
 * write is in flight): the frame is to be offered again after fs_io_service. */
int fs_data(struct stream *s, const unsigned char *p, size_t n, int eof);
/* Where the n payload bytes of the next DATA frame for a write stream can be read
 * straight into, sparing their copy: the free part of the stage being filled when they
 * all fit there; else NULL. fs_data then finds them in place. */
unsigned char *fs_place(struct stream *s, size_t n);
/* Closes the file (a write's temporary file is removed) and frees the stream. */
void fs_abort(struct stream *s);

void fs_poll_add(struct stream *s, struct pollset *ps);
void fs_service(struct stream *s, const struct pollset *ps);
/* The completions of asynchronous writes, for every write stream at once. */
void fs_io_poll_add(struct pollset *ps);
void fs_io_service(const struct pollset *ps);

#endif
