/* info.c — the agent's identity (HELLO reply) and health figures (INFO_OK), read from
 * uname and /proc. */
#include "info.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "channel.h"
#include "frame.h"

/* Reads a small file into buf (NUL-terminated, trailing newline removed). */
static void read_small(const char *path, char *buf, size_t n)
{
	buf[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		r = 0;
	buf[r] = 0;
	buf[strcspn(buf, "\n")] = 0;
}

void info_hello(uint32_t id)
{
	struct utsname u;
	char boot_id[64];
	if (uname(&u) < 0)
		u.release[0] = 0;
	read_small("/proc/sys/kernel/random/boot_id", boot_id, sizeof boot_id);

	unsigned char mem[512];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, id, T_HELLO);
	fb_int(&b, 1, PROTO_VERSION);
	fb_str(&b, 2, AGENT_VERSION);
	fb_str(&b, 3, u.release);
	fb_str(&b, 4, boot_id);
	chan_send(mem, fb_finish(&b));
}

/* KiB values of "MemTotal:" and "MemAvailable:" in /proc/meminfo. */
static void meminfo(int64_t *total, int64_t *avail)
{
	*total = *avail = 0;
	FILE *fp = fopen("/proc/meminfo", "re");
	if (!fp)
		return;
	char line[128];
	long long v;
	while (fgets(line, sizeof line, fp)) {
		if (sscanf(line, "MemTotal: %lld", &v) == 1)
			*total = v;
		else if (sscanf(line, "MemAvailable: %lld", &v) == 1)
			*avail = v;
	}
	fclose(fp);
}

static int64_t process_count(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int64_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += isdigit((unsigned char)de->d_name[0]) != 0;
	closedir(d);
	return n;
}

void info_reply(uint32_t id)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	int64_t total, avail;
	meminfo(&total, &avail);
	char load[128];
	read_small("/proc/loadavg", load, sizeof load);
	/* "0.00 0.01 0.05 1/80 123": keep the three averages */
	char *end = load;
	for (int fields = 0; *end && fields < 3; fields += *end++ == ' ')
		;
	if (end > load && end[-1] == ' ')
		end[-1] = 0;

	unsigned char mem[256];
	struct fbuf b;
	fb_frame(&b, mem, sizeof mem, id, T_INFO_OK);
	fb_int(&b, 1, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	fb_int(&b, 2, total);
	fb_int(&b, 3, avail);
	fb_int(&b, 4, process_count());
	fb_str(&b, 5, load);
	chan_send(mem, fb_finish(&b));
}
