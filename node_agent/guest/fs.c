/* fs.c — FS requests. `read` streams DATA under the host's window; `write` collects DATA
 * into a temporary file beside the target (with asynchronous direct I/O where the file
 * system has it) and renames it over the target at EOF; the other ops answer with one
 * DONE (or ERROR).
 * Paths must be absolute. Removal never follows symlinks: it walks the tree with
 * openat/fstatat/unlinkat and O_NOFOLLOW. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "frame.h"

enum fs_tag { F_OP = 1, F_PATH = 2, F_PATH2 = 3, F_MODE = 4, F_FLAG = 5 };
enum done_tag { D_SIZE = 1, D_ENTRY = 10 };
enum entry_tag { N_NAME = 1, N_KIND, N_SIZE, N_MODE, N_MTIME, N_UID, N_GID, N_TARGET };

#define TMP_ATTEMPTS 100
#define REMOVE_PASSES 8
#define STAGE_SIZE (1u << 20)
#define DIRECT_ALIGN 4096
#define MAX_STAGES 8 /* stages of all writes: 8 MiB at most */

struct fs_req {
	uint32_t id;
	char op[16];
	char path[PATH_MAX], path2[PATH_MAX];
	int64_t mode; /* -1 = not given */
	int flag;     /* recursive / parents */
};

static unsigned char big[FRAME_HDR + FRAME_MAX_PAYLOAD]; /* list/stat replies */

static const char *fs_kind(int err)
{
	switch (err) {
	case ENOENT:
		return "NotFound";
	case EACCES:
	case EPERM:
		return "PermissionDenied";
	case EEXIST:
		return "Exists";
	case ENOTDIR:
		return "NotADirectory";
	case EISDIR:
		return "IsADirectory";
	case ENOTEMPTY:
		return "NotEmpty";
	case EINVAL:
	case ENAMETOOLONG:
		return "InvalidArgument";
	default:
		return "Io";
	}
}

static void fs_error(uint32_t id, int err, const char *what, const char *path)
{
	send_error(id, fs_kind(err), err, "%s %.300s: %s", what, path, strerror(err));
}

static void send_done(uint32_t id, int64_t size)
{
	unsigned char mem[64];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, id, T_DONE);
	fb_int(&b, D_SIZE, size);
	chan_send(mem, fb_finish(&b));
}

/* ---- request parsing ---- */

static int get_path(const struct field *f, char *out)
{
	if (f->len == 0 || f->len >= PATH_MAX || memchr(f->val, 0, f->len) || f->val[0] != '/')
		return -1;
	memcpy(out, f->val, f->len);
	size_t n = f->len;
	while (n > 1 && out[n - 1] == '/')
		n--; /* "dir/" would make the last component follow a symlink */
	out[n] = 0;
	return 0;
}

static int parse_request(const unsigned char *p, size_t n, struct fs_req *rq)
{
	struct field_iter it;
	struct field f;
	int64_t v;
	rq->mode = -1;
	fields_begin(&it, p, n);
	while (fields_next(&it, &f)) {
		switch (f.tag) {
		case F_OP:
			if (f.len >= sizeof rq->op)
				f.len = 0; /* reported as an unknown op */
			memcpy(rq->op, f.val, f.len);
			rq->op[f.len] = 0;
			break;
		case F_PATH:
		case F_PATH2:
			if (get_path(&f, f.tag == F_PATH ? rq->path : rq->path2) < 0) {
				send_error(rq->id, "InvalidArgument", EINVAL,
					   "field %u: want an absolute path", f.tag);
				return -1;
			}
			break;
		case F_MODE:
		case F_FLAG:
			if (field_int(&f, &v) < 0) {
				send_error(rq->id, "Protocol", 0, "field %u is not an 8-byte integer",
					   f.tag);
				return -1;
			}
			if (f.tag == F_FLAG)
				rq->flag = v == 1;
			else if (v < 0 || v > 07777) {
				send_error(rq->id, "InvalidArgument", EINVAL, "mode out of range");
				return -1;
			} else
				rq->mode = v;
			break;
		}
	}
	if (!rq->path[0]) {
		send_error(rq->id, "InvalidArgument", EINVAL, "path (field 2) is missing");
		return -1;
	}
	return 0;
}

/* ---- read ---- */

static void op_read(const struct fs_req *rq)
{
	int fd = open(rq->path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fs_error(rq->id, errno, "read", rq->path);
		if (fd >= 0)
			close(fd);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		fs_error(rq->id, EISDIR, "read", rq->path);
		return;
	}
	struct stream *s = stream_new(rq->id, S_READ);
	if (!s) {
		close(fd);
		send_error(rq->id, "Io", EMFILE, "too many concurrent streams");
		return;
	}
	s->rd.fd = fd;
}

static void read_service(struct stream *s)
{
	size_t want = flow_chunk(s);
	ssize_t r = read(s->rd.fd, chan_data_buf() + FRAME_HDR, want);
	if (r > 0) {
		s->credit -= r;
		s->rd.size += r;
		chan_send_data(s->id, T_DATA, 0, (size_t)r);
	} else if (r == 0) {
		chan_send_data(s->id, T_DATA, FLAG_EOF, 0);
		send_done(s->id, s->rd.size);
		fs_abort(s);
	} else if (errno != EAGAIN && errno != EINTR) {
		stream_fail(s, fs_kind(errno), errno, "read: %s", strerror(errno));
	}
}

/* ---- write ---- */

/* A written file goes around the guest's page cache: under TCG the buffered path (page
 * allocation, ext4 allocation, writeback, all on the one vCPU) costs 4-5x a direct
 * write, whose copy QEMU makes on the host (256 MiB: ~1.5-2.2 s against ~0.4 s). Direct
 * I/O wants aligned buffers, offsets and lengths, so the payloads gather in aligned
 * stages and the unaligned tail is written buffered at the end.
 *
 * A full stage is written asynchronously while the next one fills, so receiving the
 * next MiB overlaps writing the last. Linux native AIO rather than a writer thread: no
 * locks, the loop polls one more fd (an eventfd every completion signals), and the
 * kernel holds its own reference to the file, so an aborted write closes and unlinks
 * at once and only its stages in flight wait for their completion to be freed.
 *
 * A write holds up to RING stages, from MAX_STAGES in all. When they are all in flight
 * its credit is held back, and a DATA frame that finds no stage to go into stays in the
 * channel (fs_data returns -1) until a completion frees one. A write that gets no stage
 * at its start (the file system has no direct I/O, as tmpfs or 9p; no stage is left;
 * no AIO; no memory) is written buffered and synchronously. */

#define RING 4 /* stages of one write: three written while the fourth fills */

/* From <linux/aio_abi.h>, which musl does not ship (little-endian layout). */
typedef unsigned long aio_context_t;
#define IOCB_CMD_PWRITE 1
#define IOCB_FLAG_RESFD 1
struct iocb {
	uint64_t aio_data;
	uint32_t aio_key, aio_rw_flags;
	uint16_t aio_lio_opcode;
	int16_t aio_reqprio;
	uint32_t aio_fildes;
	uint64_t aio_buf, aio_nbytes;
	int64_t aio_offset;
	uint64_t aio_reserved2;
	uint32_t aio_flags, aio_resfd;
};
struct io_event {
	uint64_t data, obj;
	int64_t res, res2;
};
_Static_assert(sizeof(struct iocb) == 64, "struct iocb is 64 bytes");

struct stage {
	unsigned char *buf;   /* STAGE_SIZE bytes; NULL: this slot of the budget is free */
	struct stream *owner; /* NULL once its write has gone: freed when it completes */
	int busy;             /* the kernel is writing from it */
};

static struct stage pool[MAX_STAGES];

static struct {
	aio_context_t ctx;
	int efd;  /* eventfd signalled by each completion; -1 until the first direct write */
	int busy; /* stages in flight, including those of writes that have gone */
	int pi;
} aio = {.efd = -1, .pi = -1};

static int aio_start(void)
{
	if (aio.efd >= 0)
		return 0;
	if (syscall(SYS_io_setup, (long)MAX_STAGES, &aio.ctx) < 0)
		return -1;
	aio.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (aio.efd < 0) {
		syscall(SYS_io_destroy, aio.ctx);
		aio.ctx = 0;
		return -1;
	}
	return 0;
}

static void stage_free(struct stage *st)
{
	free(st->buf);
	*st = (struct stage){0};
}

/* A stage for s to fill: an idle one of its own, else a new one while s holds fewer than
 * RING and the budget lasts; NULL when there is none. */
static struct stage *stage_get(struct stream *s)
{
	struct stage *slot = NULL;
	int held = 0;
	for (int i = 0; i < MAX_STAGES; i++) {
		struct stage *st = &pool[i];
		if (st->owner == s) {
			if (!st->busy && st != s->wr.stage)
				return st;
			held++;
		} else if (!st->buf && !slot) {
			slot = st;
		}
	}
	void *buf;
	if (!slot || held >= RING || posix_memalign(&buf, DIRECT_ALIGN, STAGE_SIZE) != 0)
		return NULL;
	*slot = (struct stage){.buf = buf, .owner = s};
	return slot;
}

/* Direct I/O and a first stage for a new write; 0: it stays buffered. */
static int direct_start(struct stream *s)
{
	int fd = s->wr.fd, flags = fcntl(fd, F_GETFL);
	if (aio_start() < 0 || flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) < 0)
		return 0;
	if (!(s->wr.stage = stage_get(s))) {
		fcntl(fd, F_SETFL, flags);
		return 0;
	}
	return 1;
}

static void op_write(const struct fs_req *rq)
{
	struct stat st;
	if (lstat(rq->path, &st) == 0 && S_ISDIR(st.st_mode)) {
		fs_error(rq->id, EISDIR, "write", rq->path);
		return;
	}
	static unsigned counter;
	char tmp[PATH_MAX + 64];
	const char *slash = strrchr(rq->path, '/');
	int dlen = (int)(slash - rq->path), fd = -1;
	for (int i = 0; fd < 0 && i < TMP_ATTEMPTS; i++) {
		snprintf(tmp, sizeof tmp, "%.*s/.corral-write.%d.%u", dlen, rq->path, (int)getpid(),
			 counter++);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		fs_error(rq->id, errno, "write", rq->path);
		return;
	}
	struct stream *s = NULL;
	char *tmp_copy = strdup(tmp), *path_copy = strdup(rq->path);
	int err = fchmod(fd, rq->mode < 0 ? 0644 : (mode_t)rq->mode) < 0 ? errno : 0;
	if (!err && (!tmp_copy || !path_copy || !(s = stream_new(rq->id, S_WRITE))))
		err = tmp_copy && path_copy ? EMFILE : ENOMEM;
	if (err) {
		close(fd);
		unlink(tmp);
		free(tmp_copy);
		free(path_copy);
		fs_error(rq->id, err, "write", rq->path);
		return;
	}
	s->wr.fd = fd;
	s->wr.tmp = tmp_copy;
	s->wr.path = path_copy;
	s->wr.direct = direct_start(s);
}

static int write_at(int fd, const unsigned char *p, size_t n, int64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static void write_fail(struct stream *s, int err)
{
	stream_fail(s, fs_kind(err), err, "write %.300s: %s", s->wr.path, strerror(err));
}

/* Starts writing the full stage being filled, at its offset in the file. */
static int stage_submit(struct write_state *w)
{
	/* ext4 makes io_submit wait for a direct write that extends the file (6.1:
	 * IOMAP_DIO_FORCE_WAIT); one into a hole below the size stays asynchronous. */
	if (ftruncate(w->fd, w->offset + STAGE_SIZE) < 0)
		return -1;
	struct iocb cb = {
		.aio_data = (uintptr_t)w->stage,
		.aio_lio_opcode = IOCB_CMD_PWRITE,
		.aio_fildes = (uint32_t)w->fd,
		.aio_buf = (uintptr_t)w->stage->buf,
		.aio_nbytes = STAGE_SIZE,
		.aio_offset = w->offset,
		.aio_flags = IOCB_FLAG_RESFD,
		.aio_resfd = (uint32_t)aio.efd,
	};
	struct iocb *cbs[1] = {&cb};
	if (syscall(SYS_io_submit, aio.ctx, 1L, cbs) != 1)
		return -1;
	w->stage->busy = 1;
	aio.busy++;
	w->inflight++;
	return 0;
}

/* Whether n bytes can go into the stages now: they fit in the stage being filled, or
 * another is at hand for the overflow, or nothing is in flight (the one stage is then
 * written synchronously, see stage_copy). When not, a completion is to come: a write
 * always holds a stage, so with none to fill some are in flight. */
static int stage_room(struct stream *s, size_t n)
{
	struct write_state *w = &s->wr;
	if (!w->stage && !(w->stage = stage_get(s)))
		return 0;
	return n <= STAGE_SIZE - w->staged || stage_get(s) || !w->inflight;
}

static int stage_copy(struct stream *s, const unsigned char *p, size_t n)
{
	struct write_state *w = &s->wr;
	while (n) {
		size_t take = STAGE_SIZE - w->staged < n ? STAGE_SIZE - w->staged : n;
		if (p != w->stage->buf + w->staged) /* else the channel read it in place */
			memcpy(w->stage->buf + w->staged, p, take);
		w->staged += take;
		p += take;
		n -= take;
		if (w->staged < STAGE_SIZE)
			continue;
		/* Full. Written in the background when there is another stage to fill meanwhile
		 * or nothing more to fill now (w->stage is then NULL until a completion). A write
		 * with one stage and more bytes to place waits for it, as a write always did. */
		struct stage *next = stage_get(s);
		if (next || !n) {
			if (stage_submit(w) < 0)
				return -1;
			w->stage = next;
		} else if (write_at(w->fd, w->stage->buf, STAGE_SIZE, w->offset) < 0) {
			return -1;
		}
		w->offset += STAGE_SIZE;
		w->staged = 0;
	}
	return 0;
}

/* The aligned part of what is staged goes direct, the rest through the page cache. */
static int stage_finish(struct write_state *w)
{
	size_t aligned = w->staged & ~(size_t)(DIRECT_ALIGN - 1);
	if (aligned && write_at(w->fd, w->stage->buf, aligned, w->offset) < 0)
		return -1;
	int flags = fcntl(w->fd, F_GETFL);
	if (flags < 0 || fcntl(w->fd, F_SETFL, flags & ~O_DIRECT) < 0)
		return -1;
	return write_at(w->fd, w->stage->buf + aligned, w->staged - aligned,
			w->offset + (int64_t)aligned);
}

/* Credit for n consumed bytes; held back while every stage of the write is in flight, so
 * the host stops sending, and useless after EOF. It goes back a quarter of the window at
 * a time: each WINDOW frame costs a wakeup of QEMU, the supervisor and the client, and
 * the host still has three quarters in hand meanwhile. */
#define CREDIT_STEP (WINDOW_SIZE / 4)
static void write_credit(struct stream *s, int64_t n)
{
	struct write_state *w = &s->wr;
	w->withheld += n;
	if (w->eof || w->withheld < CREDIT_STEP || (w->direct && !w->stage))
		return;
	flow_consume(s, (size_t)w->withheld, 1);
	w->withheld = 0;
}

/* At EOF with no direct write in flight: the rest of the stage, close, rename, DONE. */
static void write_finish(struct stream *s)
{
	struct write_state *w = &s->wr;
	if (w->stage && stage_finish(w) < 0) {
		write_fail(s, errno ? errno : EIO);
		return;
	}
	int r = close(w->fd);
	w->fd = -1;
	if (r < 0 || rename(w->tmp, w->path) < 0) {
		write_fail(s, errno);
		return;
	}
	send_done(s->id, w->size);
	free(w->tmp);
	w->tmp = NULL;
	fs_abort(s);
}

unsigned char *fs_place(struct stream *s, size_t n)
{
	struct write_state *w = &s->wr;
	if (!w->direct || w->eof || !w->stage || n > STAGE_SIZE - w->staged)
		return NULL;
	return w->stage->buf + w->staged;
}

int fs_data(struct stream *s, const unsigned char *p, size_t n, int eof)
{
	struct write_state *w = &s->wr;
	if (w->eof) {
		stream_fail(s, "Protocol", 0, "DATA after EOF");
		return 0;
	}
	if (w->direct && !stage_room(s, n))
		return -1;
	if (flow_receive(s, n) < 0) {
		stream_fail(s, "Protocol", 0, "DATA beyond the window");
		return 0;
	}
	if ((w->direct ? stage_copy(s, p, n) : write_at(w->fd, p, n, w->size)) < 0) {
		write_fail(s, errno ? errno : EIO);
		return 0;
	}
	w->size += (int64_t)n;
	w->eof = eof;
	write_credit(s, (int64_t)n);
	if (eof && !w->inflight)
		write_finish(s);
	return 0;
}

/* A direct write has completed: its stage is free for its write again (or freed when the
 * write has gone). A short write is an error like any other. */
static void stage_done(struct stage *st, int64_t res)
{
	struct stream *s = st->owner;
	st->busy = 0;
	aio.busy--;
	if (!s) {
		stage_free(st);
		return;
	}
	struct write_state *w = &s->wr;
	w->inflight--;
	if (res != STAGE_SIZE) {
		write_fail(s, res < 0 ? (int)-res : EIO);
		return;
	}
	if (!w->stage)
		w->stage = st;
	write_credit(s, 0);
	if (w->eof && !w->inflight)
		write_finish(s);
}

void fs_io_poll_add(struct pollset *ps)
{
	aio.pi = aio.busy ? pollset_add(ps, aio.efd, POLLIN) : -1;
}

void fs_io_service(const struct pollset *ps)
{
	uint64_t signalled;
	if (!pollset_revents(ps, aio.pi) || read(aio.efd, &signalled, sizeof signalled) < 0)
		return;
	struct io_event ev[MAX_STAGES];
	struct timespec now = {0, 0};
	long got;
	do
		got = syscall(SYS_io_getevents, aio.ctx, 0L, (long)MAX_STAGES, ev, &now);
	while (got < 0 && errno == EINTR);
	for (long i = 0; i < got; i++)
		stage_done((struct stage *)(uintptr_t)ev[i].data, ev[i].res);
}

void fs_abort(struct stream *s)
{
	if (s->kind == S_READ) {
		close(s->rd.fd);
		stream_free(s);
		return;
	}
	if (s->wr.fd >= 0)
		close(s->wr.fd); /* writes in flight hold their own reference to the file */
	if (s->wr.tmp)
		unlink(s->wr.tmp);
	free(s->wr.tmp);
	free(s->wr.path);
	for (int i = 0; i < MAX_STAGES; i++) {
		struct stage *st = &pool[i];
		if (st->owner != s)
			continue;
		if (st->busy)
			st->owner = NULL; /* the kernel still reads from it: freed at completion */
		else
			stage_free(st);
	}
	stream_free(s);
}

void fs_poll_add(struct stream *s, struct pollset *ps)
{
	if (s->kind == S_READ)
		s->rd.pi = s->credit > 0 ? pollset_add(ps, s->rd.fd, POLLIN) : -1;
}

void fs_service(struct stream *s, const struct pollset *ps)
{
	if (s->kind == S_READ && pollset_revents(ps, s->rd.pi))
		read_service(s);
}

/* ---- list and stat ---- */

static const char *entry_kind(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	return "other";
}

/* Appends one entry; -1 (and nothing appended) when the frame is full. */
static int put_entry(struct fbuf *b, int dfd, const char *name, const struct stat *st)
{
	char target[PATH_MAX];
	ssize_t tlen = S_ISLNK(st->st_mode) ? readlinkat(dfd, name, target, sizeof target) : -1;
	const char *base = strrchr(name, '/');
	size_t mark = fb_nest_begin(b, D_ENTRY);
	fb_str(b, N_NAME, base && base[1] ? base + 1 : name);
	fb_str(b, N_KIND, entry_kind(st->st_mode));
	fb_int(b, N_SIZE, st->st_size);
	fb_int(b, N_MODE, st->st_mode & 07777);
	fb_int(b, N_MTIME, (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec);
	fb_int(b, N_UID, st->st_uid);
	fb_int(b, N_GID, st->st_gid);
	if (tlen >= 0)
		fb_bytes(b, N_TARGET, target, (size_t)tlen);
	fb_nest_end(b, mark);
	if (b->overflow) {
		fb_rollback(b, mark);
		return -1;
	}
	return 0;
}

static void op_stat(const struct fs_req *rq)
{
	struct stat st;
	if (lstat(rq->path, &st) < 0) {
		fs_error(rq->id, errno, "stat", rq->path);
		return;
	}
	struct fbuf b;
	fb_frame(&b, big, sizeof big, rq->id, T_DONE);
	put_entry(&b, AT_FDCWD, rq->path, &st);
	chan_send(big, fb_finish(&b));
}

/* Entries go out in DONE; when they overflow one frame, full frames go first as ENTRIES. */
static void op_list(const struct fs_req *rq)
{
	int dfd = open(rq->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		fs_error(rq->id, errno, "list", rq->path);
		if (dfd >= 0)
			close(dfd);
		return;
	}
	struct fbuf b;
	fb_frame(&b, big, sizeof big, rq->id, T_DONE);
	struct dirent *de;
	int err = 0;
	while (!err && (errno = 0, de = readdir(d))) {
		struct stat st;
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT) /* ENOENT: removed meanwhile */
				err = errno;
			continue;
		}
		if (put_entry(&b, dfd, name, &st) < 0) {
			big[8] = T_ENTRIES;
			chan_send(big, fb_finish(&b));
			fb_frame(&b, big, sizeof big, rq->id, T_DONE);
			put_entry(&b, dfd, name, &st);
		}
	}
	if (!err)
		err = errno;
	closedir(d);
	if (err)
		fs_error(rq->id, err, "list", rq->path);
	else
		chan_send(big, fb_finish(&b));
}

/* ---- mkdir, remove, rename ---- */

static int mkdir_parents(char *path, mode_t mode)
{
	for (char *p = path + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;
		*p = 0;
		struct stat st;
		int r = mkdir(path, mode), e = errno;
		if (r < 0 && e == EEXIST && stat(path, &st) == 0)
			r = S_ISDIR(st.st_mode) ? 0 : (e = ENOTDIR, -1);
		*p = c;
		if (r < 0) {
			errno = e;
			return -1;
		}
		if (!c)
			return 0;
	}
}

static void op_mkdir(const struct fs_req *rq)
{
	mode_t mode = rq->mode < 0 ? 0755 : (mode_t)rq->mode;
	char path[PATH_MAX];
	strcpy(path, rq->path);
	if ((rq->flag ? mkdir_parents(path, mode) : mkdir(path, mode)) < 0)
		fs_error(rq->id, errno, "mkdir", rq->path);
	else
		send_done(rq->id, 0);
}

/* Empties the directory open at dfd (which it closes) without following symlinks. */
static int empty_dir(int dfd)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	int err = 0, removed = 1;
	for (int pass = 0; !err && removed && pass < REMOVE_PASSES; pass++) {
		removed = 0;
		rewinddir(d);
		struct dirent *de;
		while (!err && (de = readdir(d))) {
			const char *name = de->d_name;
			struct stat st;
			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				err = errno == ENOENT ? 0 : errno;
				continue;
			}
			if (S_ISDIR(st.st_mode)) {
				int sub = openat(dfd, name,
						 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub < 0 || empty_dir(sub) < 0 ||
				    unlinkat(dfd, name, AT_REMOVEDIR) < 0)
					err = errno;
			} else if (unlinkat(dfd, name, 0) < 0) {
				err = errno;
			}
			removed++;
		}
	}
	closedir(d);
	errno = err;
	return err ? -1 : 0;
}

static void op_remove(const struct fs_req *rq)
{
	struct stat st;
	int r = lstat(rq->path, &st);
	if (r == 0 && !S_ISDIR(st.st_mode)) {
		r = unlink(rq->path);
	} else if (r == 0 && rq->flag) {
		int fd = open(rq->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = fd < 0 || empty_dir(fd) < 0 ? -1 : rmdir(rq->path);
	} else if (r == 0) {
		r = rmdir(rq->path);
	}
	if (r < 0)
		fs_error(rq->id, errno, "remove", rq->path);
	else
		send_done(rq->id, 0);
}

static void op_rename(const struct fs_req *rq)
{
	if (!rq->path2[0])
		send_error(rq->id, "InvalidArgument", EINVAL, "rename needs path2 (field 3)");
	else if (rename(rq->path, rq->path2) < 0)
		fs_error(rq->id, errno, "rename", rq->path);
	else
		send_done(rq->id, 0);
}

static const struct {
	const char *name;
	void (*run)(const struct fs_req *);
} ops[] = {
	{"read", op_read},   {"write", op_write},   {"list", op_list},     {"stat", op_stat},
	{"mkdir", op_mkdir}, {"remove", op_remove}, {"rename", op_rename},
};

void fs_start(uint32_t id, const unsigned char *p, size_t n)
{
	static struct fs_req rq; /* two PATH_MAX buffers: kept off the stack */
	memset(&rq, 0, sizeof rq);
	rq.id = id;
	if (parse_request(p, n, &rq) < 0)
		return;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(rq.op, ops[i].name)) {
			ops[i].run(&rq);
			return;
		}
	send_error(id, "InvalidArgument", EINVAL, "unknown FS op %.32s", rq.op);
}
