/* identity.c — see identity.h. */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "frame.h"

/* From <linux/random.h>, which musl does not ship. */
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)
struct rand_pool_info {
	int entropy_count;
	int buf_size;
};

#define ENTROPY_MAX 256
#define HOSTNAME_MAX 64

static void set_clock(const struct field *f)
{
	int64_t ns;
	if (field_int(f, &ns) < 0 || ns <= 0) {
		say("ignoring a bad wall clock from the host");
		return;
	}
	struct timespec ts = {ns / 1000000000, ns % 1000000000};
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		say("cannot set the clock: %s", strerror(errno));
}

/* Credits the host's bytes and reseeds at once: a restored guest's generator state is
 * its snapshot's, identical in every sandbox restored from it until reseeded. */
static void add_entropy(const struct field *f)
{
	if (f->len == 0 || f->len > ENTROPY_MAX) {
		say("ignoring %u bytes of entropy from the host", f->len);
		return;
	}
	struct {
		struct rand_pool_info info;
		unsigned char buf[ENTROPY_MAX];
	} seed;
	seed.info.entropy_count = (int)f->len * 8;
	seed.info.buf_size = (int)f->len;
	memcpy(seed.buf, f->val, f->len);
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &seed.info) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		say("cannot reseed the random generator: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	explicit_bzero(&seed, sizeof seed);
}

static void set_hostname(const struct field *f)
{
	if (f->len == 0 || f->len > HOSTNAME_MAX || memchr(f->val, 0, f->len)) {
		say("ignoring a bad hostname from the host");
		return;
	}
	if (sethostname((const char *)f->val, f->len) < 0)
		say("cannot set the hostname: %s", strerror(errno));
}

void identity_apply(const unsigned char *p, size_t n)
{
	struct field f;
	if (fields_find(p, n, 2, &f))
		set_clock(&f);
	if (fields_find(p, n, 3, &f))
		add_entropy(&f);
	if (fields_find(p, n, 4, &f))
		set_hostname(&f);
}
