/* channel.c — the byte pipe to the host. As PID 1 it is the virtio-serial port named
 * corral.0; in test mode the unix socket (or character device) given with --channel.
 * Owns opening and reopening, cutting input into frames, and blocking frame writes.
 *
 * A virtio port reads EOF (and polls POLLHUP) while no host is connected, so after EOF
 * the port is kept open and probed every IDLE_PROBE_MS until data arrives: closing it
 * would discard input the host may already have sent. */
#include "channel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define PORT_NAME "corral.0"
#define PORTS_DIR "/sys/class/virtio-ports"
#define IDLE_PROBE_MS 10
#define PORT_RETRY_MS 20
#define PORT_WAIT_MS 10000
#define REOPEN_RETRY_MS 100
#define IN_CAP (2 * (FRAME_HDR + FRAME_MAX_PAYLOAD))
#define READ_BURST (1u << 20) /* read before the rest of the loop has a turn */
#define PORT_BUF 4096 /* the most a virtio port hands out per read: one page-sized buffer */
#define READ_IOVS 64

enum chan_state { DOWN, IDLE, UP };

static struct {
	const char *path; /* --channel path; NULL = the virtio port */
	int fd;
	int is_char;
	enum chan_state state;
	int lost;          /* a write found the host gone */
	int held;          /* on_frame refused the frame at the head of the input */
	int ever_opened;
	int unannounced;   /* opened by chan_configure: CH_OPENED is still to be reported */
	int64_t retry_at;
	int64_t first_try;
	int pi;
	size_t inlen;
	/* The payload of the frame at the head of the input, read straight to where its
	 * stream keeps it (see place_head); inbuf holds only its header meanwhile. */
	unsigned char *place; /* NULL: payloads are read into inbuf */
	size_t placed;        /* payload bytes already there */
	int dropping;         /* its stream went away: place is the sink, not delivered */
} ch = {.fd = -1, .pi = -1};

static unsigned char inbuf[IN_CAP];
static unsigned char sink[DATA_MAX_PAYLOAD];
static unsigned char databuf[FRAME_HDR + DATA_MAX_PAYLOAD];

/* Finds /dev/<vportNpM> whose sysfs name is corral.0. getdents on a stack buffer, not
 * opendir: the heap buffer of a DIR (brk, mmap, munmap on closedir) is ~10 ms of
 * first-run kernel code under TCG, on the way to "ready". */
static int find_port(char *dev, size_t n)
{
	int dfd = open(PORTS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	union {
		struct dirent de;
		char b[2048];
	} buf;
	int found = -1, len;
	while (found < 0 && (len = getdents(dfd, &buf.de, sizeof buf)) > 0) {
		for (int off = 0; found < 0 && off < len;) {
			struct dirent *de = (struct dirent *)(buf.b + off);
			off += de->d_reclen;
			if (de->d_name[0] == '.')
				continue;
			char p[300], name[64] = "";
			snprintf(p, sizeof p, "%s/name", de->d_name);
			int fd = openat(dfd, p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t r = read(fd, name, sizeof name - 1);
			close(fd);
			if (r > 0 && name[r - 1] == '\n')
				r--;
			if (r == (ssize_t)strlen(PORT_NAME) && !memcmp(name, PORT_NAME, (size_t)r)) {
				snprintf(dev, n, "/dev/%s", de->d_name);
				found = 0;
			}
		}
	}
	close(dfd);
	return found;
}

static int connect_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int open_channel(void)
{
	char dev[300];
	const char *path = ch.path;
	if (!path) {
		if (find_port(dev, sizeof dev) < 0) {
			errno = ENOENT;
			return -1;
		}
		path = dev;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	ch.is_char = S_ISCHR(st.st_mode);
	if (ch.is_char)
		ch.fd = open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	else
		ch.fd = connect_socket(path);
	return ch.fd < 0 ? -1 : 0;
}

static void close_channel(int64_t retry_at)
{
	if (ch.fd >= 0)
		close(ch.fd);
	ch.fd = -1;
	ch.state = DOWN;
	ch.retry_at = retry_at;
}

static void input_reset(void)
{
	ch.inlen = 0;
	ch.held = 0;
	ch.place = NULL;
	ch.placed = 0;
	ch.dropping = 0;
}

static enum chan_event try_open(int64_t now)
{
	if (!ch.first_try)
		ch.first_try = now;
	if (open_channel() == 0) {
		ch.state = UP;
		ch.lost = 0;
		input_reset();
		ch.ever_opened = 1;
		return CH_OPENED;
	}
	if (ch.path)
		die("cannot open channel %s: %s", ch.path, strerror(errno));
	if (!ch.ever_opened && now - ch.first_try > PORT_WAIT_MS)
		die("no virtio-serial port named " PORT_NAME);
	ch.retry_at = now + (ch.ever_opened ? REOPEN_RETRY_MS : PORT_RETRY_MS);
	return CH_NONE;
}

void chan_configure(const char *path)
{
	ch.path = path;
	ch.unannounced = try_open(now_ms()) == CH_OPENED;
}

/* The host went away: keep a character device for probing, drop a socket. */
static enum chan_event host_gone(int64_t now)
{
	input_reset();
	ch.lost = 0;
	if (ch.is_char)
		ch.state = IDLE;
	else
		close_channel(now);
	return CH_EOF;
}

/* One readv of what is there: bytes read, 0 when there is nothing, -1 when the host has
 * gone. A virtio port hands out one 4 KiB buffer per read call, and readv of a port is a
 * loop of such reads in one system call (it stops at the first short one), so page-sized
 * iovecs take up to READ_IOVS buffers per call instead of one: a system call costs
 * microseconds under TCG. The rest of a placed payload goes first, to its place, and one
 * buffer more at most into inbuf, so the next frame's header arrives and its payload can
 * be placed too; so does a header that is still incomplete. */
static ssize_t read_some(const struct frame *head)
{
	struct iovec iov[READ_IOVS];
	int n = 0, limit = READ_IOVS;
	if (ch.place) {
		size_t at = ch.placed;
		for (; n < READ_IOVS - 1 && at < head->len; at += PORT_BUF) {
			size_t left = head->len - at;
			iov[n++] = (struct iovec){ch.place + at, left < PORT_BUF ? left : PORT_BUF};
		}
		limit = at < head->len ? n : n + 1; /* inbuf only past the payload's end */
	} else if (ch.inlen < FRAME_HDR) {
		limit = 1;
	}
	for (size_t at = ch.inlen; n < limit && at < sizeof inbuf; at += PORT_BUF) {
		size_t room = sizeof inbuf - at;
		iov[n++] = (struct iovec){inbuf + at, room < PORT_BUF ? room : PORT_BUF};
	}
	ssize_t r;
	do
		r = readv(ch.fd, iov, n);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r <= 0)
		return -1;
	size_t to_place = 0;
	if (ch.place) {
		to_place = head->len - ch.placed < (size_t)r ? head->len - ch.placed : (size_t)r;
		ch.placed += to_place;
	}
	ch.inlen += (size_t)r - to_place;
	return r;
}

/* Hands every complete frame to on_frame and keeps the incomplete rest; -1 when the
 * channel was dropped for a corrupt header. */
static int take_frames(int (*on_frame)(const struct frame *), int64_t now)
{
	size_t off = 0;
	while (ch.inlen - off >= FRAME_HDR) {
		struct frame f;
		if (frame_header(inbuf + off, &f) < 0) {
			say("corrupt frame header (length %u), reopening the channel", f.len);
			close_channel(now);
			return -1;
		}
		size_t held_here = f.len; /* payload bytes of this frame in inbuf */
		if (off == 0 && ch.place) {
			if (ch.placed < f.len)
				break;
			f.payload = ch.place;
			held_here = 0;
		} else if (ch.inlen - off < FRAME_HDR + (size_t)f.len) {
			break;
		}
		if (!(off == 0 && ch.dropping) && on_frame(&f) < 0) {
			ch.held = 1;
			break;
		}
		if (off == 0) {
			ch.place = NULL;
			ch.placed = 0;
			ch.dropping = 0;
		}
		off += FRAME_HDR + held_here;
		if (ch.lost)
			break;
	}
	if (off) {
		memmove(inbuf, inbuf + off, ch.inlen - off);
		ch.inlen -= off;
	}
	return 0;
}

/* A DATA payload still to come for the frame at the head of the input goes straight to
 * the place its stream gives (a write's stage: that spares copying every byte written
 * once more under TCG). Asked again before each read: when the answer changes, the
 * stream has gone, and the rest of the payload is read into the sink and dropped. */
static void place_head(const struct frame *head, unsigned char *(*place)(const struct frame *))
{
	if (ch.dropping)
		return;
	unsigned char *dest = place(head);
	if (ch.place && dest != ch.place) {
		ch.place = sink;
		ch.dropping = 1;
	} else if (!ch.place && dest) {
		size_t have = ch.inlen - FRAME_HDR;
		memcpy(dest, inbuf + FRAME_HDR, have);
		ch.place = dest;
		ch.placed = have;
		ch.inlen = FRAME_HDR;
	}
}

/* A held frame is offered again before anything more is read; then reads and frames
 * alternate, up to READ_BURST bytes. */
static enum chan_event read_frames(int (*on_frame)(const struct frame *),
				   unsigned char *(*place)(const struct frame *), int64_t now)
{
	size_t got = 0;
	if (ch.held) {
		ch.held = 0;
		if (take_frames(on_frame, now) < 0)
			return CH_CORRUPT;
		if (ch.lost)
			return host_gone(now);
	}
	while (!ch.held && got < READ_BURST && ch.inlen < sizeof inbuf) {
		struct frame head = {0};
		if (ch.inlen >= FRAME_HDR && frame_header(inbuf, &head) == 0 &&
		    ch.inlen - FRAME_HDR < head.len)
			place_head(&head, place);
		ssize_t r = read_some(&head);
		if (r == 0)
			break;
		if (r < 0)
			return host_gone(now);
		got += (size_t)r;
		if (take_frames(on_frame, now) < 0)
			return CH_CORRUPT;
		if (ch.lost)
			return host_gone(now);
	}
	return CH_NONE;
}

void chan_poll_add(struct pollset *ps)
{
	ch.pi = ch.state == UP && !ch.held ? pollset_add(ps, ch.fd, POLLIN) : -1;
}

int64_t chan_deadline(void)
{
	if (ch.unannounced)
		return 0;
	if (ch.state == DOWN)
		return ch.retry_at;
	if (ch.state == IDLE)
		return now_ms() + IDLE_PROBE_MS;
	return -1;
}

enum chan_event chan_service(const struct pollset *ps, int (*on_frame)(const struct frame *),
			     unsigned char *(*place)(const struct frame *))
{
	int64_t now = now_ms();
	if (ch.unannounced) {
		ch.unannounced = 0;
		return CH_OPENED;
	}
	if (ch.state == UP && ch.lost)
		return host_gone(now);
	switch (ch.state) {
	case DOWN:
		return now >= ch.retry_at ? try_open(now) : CH_NONE;
	case IDLE: {
		struct pollfd p = {.fd = ch.fd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN))
			ch.state = UP;
		return CH_NONE;
	}
	case UP:
		if (ch.held || pollset_revents(ps, ch.pi))
			return read_frames(on_frame, place, now);
	}
	return CH_NONE;
}

int chan_send(const unsigned char *p, size_t n)
{
	if (n == 0 || ch.state != UP || ch.lost)
		return -1;
	while (n) {
		ssize_t w = write(ch.fd, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = ch.fd, .events = POLLOUT};
			if (poll(&pfd, 1, -1) == 1 && !(pfd.revents & POLLOUT) &&
			    (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))) {
				ch.lost = 1;
				return -1;
			}
			continue;
		}
		ch.lost = 1;
		return -1;
	}
	return 0;
}

unsigned char *chan_data_buf(void)
{
	return databuf;
}

int chan_send_data(uint32_t stream, uint8_t type, uint8_t flags, size_t n)
{
	frame_put_header(databuf, stream, type, flags, (uint32_t)n);
	return chan_send(databuf, FRAME_HDR + n);
}
