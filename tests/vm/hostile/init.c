/* A hostile guest for tests/vm/test_hostile_guest.py: it boots as /init, answers the
 * host's HELLO correctly, then writes a frame header with an impossible length. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static const unsigned char hello[] = {
	0, 0, 0, 24, 0, 0, 0, 0, 0x01, 0, 0, 0,   /* HELLO on stream 0, 24-byte payload */
	0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2, /* field 1: version 2 */
	0, 4, 0, 0, 0, 4, 'e', 'v', 'i', 'l',     /* field 4: boot id */
};
static const unsigned char garbage[] = {
	0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0x13, 0, 0, 0,
};

static int find_port(char *path, size_t size)
{
	DIR *dir = opendir("/sys/class/virtio-ports");
	struct dirent *entry;
	int found = 0;
	while (dir && !found && (entry = readdir(dir))) {
		char name_path[300], name[32] = "";
		snprintf(name_path, sizeof name_path, "/sys/class/virtio-ports/%s/name",
			 entry->d_name);
		int fd = open(name_path, O_RDONLY);
		if (fd < 0)
			continue;
		if (read(fd, name, sizeof name - 1) > 0 && !strncmp(name, "corral.0", 8)) {
			snprintf(path, size, "/dev/%s", entry->d_name);
			found = 1;
		}
		close(fd);
	}
	if (dir)
		closedir(dir);
	return found;
}

int main(void)
{
	char path[300];
	unsigned char greeting[26];
	size_t got = 0;
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	while (!find_port(path, sizeof path))
		usleep(10000);
	int port = open(path, O_RDWR);
	while (port >= 0 && got < sizeof greeting) {
		ssize_t n = read(port, greeting + got, sizeof greeting - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (write(port, hello, sizeof hello) != sizeof hello)
		return 1;
	sleep(2);
	if (write(port, garbage, sizeof garbage) != sizeof garbage)
		return 1;
	for (;;)
		pause();
}
