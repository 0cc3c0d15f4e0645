/* fs.c — FS requests. `read` streams DATA under the host's window; `write` collects DATA
 * into a temporary file beside the target (with direct I/O where the file system has it)
 * and renames it over the target at EOF; the other ops answer with one DONE (or ERROR).
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
#include <sys/stat.h>
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
#define MAX_STAGES 8 /* direct writes at once: 8 MiB of stages at most */

static int stages;

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
 * I/O wants aligned buffers, offsets and lengths, so the payloads gather in an aligned
 * stage and the unaligned tail is written buffered at the end. NULL: the file system
 * has no direct I/O (tmpfs, 9p), MAX_STAGES writes have one, or there is no memory for
 * it; the write stays buffered. */
static unsigned char *direct_stage(int fd)
{
	void *stage = NULL;
	int flags = fcntl(fd, F_GETFL);
	if (stages >= MAX_STAGES || flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) < 0)
		return NULL;
	if (posix_memalign(&stage, DIRECT_ALIGN, STAGE_SIZE) != 0) {
		fcntl(fd, F_SETFL, flags);
		return NULL;
	}
	stages++;
	return stage;
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
	s->wr.stage = direct_stage(fd);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int stage_write(struct write_state *w, const unsigned char *p, size_t n)
{
	while (n) {
		size_t take = STAGE_SIZE - w->staged < n ? STAGE_SIZE - w->staged : n;
		memcpy(w->stage + w->staged, p, take);
		w->staged += take;
		p += take;
		n -= take;
		if (w->staged == STAGE_SIZE) {
			if (write_all(w->fd, w->stage, STAGE_SIZE) < 0)
				return -1;
			w->staged = 0;
		}
	}
	return 0;
}

/* The aligned part of what is staged goes direct, the rest through the page cache. */
static int stage_finish(struct write_state *w)
{
	size_t aligned = w->staged & ~(size_t)(DIRECT_ALIGN - 1);
	if (aligned && write_all(w->fd, w->stage, aligned) < 0)
		return -1;
	int flags = fcntl(w->fd, F_GETFL);
	if (flags < 0 || fcntl(w->fd, F_SETFL, flags & ~O_DIRECT) < 0)
		return -1;
	return write_all(w->fd, w->stage + aligned, w->staged - aligned);
}

void fs_data(struct stream *s, const unsigned char *p, size_t n, int eof)
{
	struct write_state *w = &s->wr;
	if (flow_receive(s, n) < 0) {
		stream_fail(s, "Protocol", 0, "DATA beyond the window");
		return;
	}
	if ((w->stage ? stage_write(w, p, n) : write_all(w->fd, p, n)) < 0 ||
	    (eof && w->stage && stage_finish(w) < 0)) {
		int e = errno ? errno : EIO;
		stream_fail(s, fs_kind(e), e, "write %.300s: %s", w->path, strerror(e));
		return;
	}
	w->size += (int64_t)n;
	if (!eof) {
		flow_consume(s, n, 1);
		return;
	}
	int r = close(w->fd);
	w->fd = -1;
	if (r < 0 || rename(w->tmp, w->path) < 0) {
		int e = errno;
		stream_fail(s, fs_kind(e), e, "write %.300s: %s", w->path, strerror(e));
		return;
	}
	send_done(s->id, w->size);
	free(w->tmp);
	w->tmp = NULL;
	fs_abort(s);
}

void fs_abort(struct stream *s)
{
	if (s->kind == S_READ) {
		close(s->rd.fd);
	} else {
		if (s->wr.fd >= 0)
			close(s->wr.fd);
		if (s->wr.tmp)
			unlink(s->wr.tmp);
		free(s->wr.tmp);
		free(s->wr.path);
		if (s->wr.stage) {
			free(s->wr.stage);
			stages--;
		}
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
