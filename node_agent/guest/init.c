/* init.c — what the agent does as PID 1 before and after serving the host: devtmpfs and
 * the console, proc/sys, the kernel modules the initramfs lists, the root switch onto an
 * overlay of the read-only image disk (corral.root) and the writable disk (corral.upper)
 * or, for corral.root=9p:TAG, straight onto the host directory QEMU shares under TAG
 * (read-write, no overlay: a bind root), the usual /dev, /run mounts, loopback up, and
 * at SHUTDOWN an orderly stop and power-off. Zombie reaping is the event loop's
 * (main.c): it waits for every child, spawned or orphaned. */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "modules.h"

#define NEW_ROOT "/mnt/root"
#define LOWER "/mnt/lower"
#define RW "/mnt/rw"
#define RW_FROM_OLD_ROOT "mnt/rw" /* relative to old_root, reachable after the switch */
#define DISK_WAIT_MS 5000
#define ROOT_9P "9p:"
/* cache=mmap: reads and writes go to the host (so changes made there are seen at once)
 * while shared writable mappings still work; 256 KiB messages for bulk I/O. */
#define OPTS_9P "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"
#define TERM_GRACE_MS 2000
#define KILL_WAIT_MS 1000

struct boot_params {
	char root[256], upper[256];
};

/* The initramfs root, kept open after the switch to reach RW at shutdown. */
static int old_root = -1;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int mount_at(const char *src, const char *dst, const char *type, unsigned long flags,
		    const char *opts)
{
	mkdir(dst, 0755);
	return mount(src, dst, type, flags, opts);
}

void init_early(void)
{
	mkdir("/dev", 0755);
	int err = 0;
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
		err = errno;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd >= 0) {
		for (int i = 0; i < 3; i++)
			dup2(fd, i);
		if (fd > 2)
			close(fd);
	}
	say("init");
	if (err)
		say("cannot mount devtmpfs on /dev: %s", strerror(err));
	if (mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
	    mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("cannot mount /proc and /sys: %s", strerror(errno));
	modules_load();
}

static void copy_param(char *dst, size_t n, const char *val, size_t len)
{
	if (len >= n)
		len = n - 1;
	memcpy(dst, val, len);
	dst[len] = 0;
}

static void read_cmdline(struct boot_params *bp)
{
	char buf[4096];
	memset(bp, 0, sizeof *bp);
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *tok = strtok(buf, " \t\n"); tok; tok = strtok(NULL, " \t\n")) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		size_t klen = (size_t)(eq - tok), vlen = strlen(eq + 1);
		if (klen == 11 && !memcmp(tok, "corral.root", klen))
			copy_param(bp->root, sizeof bp->root, eq + 1, vlen);
		else if (klen == 12 && !memcmp(tok, "corral.upper", klen))
			copy_param(bp->upper, sizeof bp->upper, eq + 1, vlen);
	}
}

/* Mounts an ext4 disk or a 9p share, waiting a little for its device to appear (a 9p
 * tag no virtio channel carries yet is ENOENT too). */
static void mount_device(const char *dev, const char *dst, const char *type, unsigned long flags,
			 const char *opts)
{
	for (int waited = 0;; waited += 10) {
		if (mount_at(dev, dst, type, flags, opts) == 0)
			return;
		if (errno == ENODEV)
			die("cannot mount %s on %s: this kernel has no %s file system", dev, dst, type);
		if ((errno != ENOENT && errno != ENXIO) || waited >= DISK_WAIT_MS)
			die("cannot mount %s on %s: %s", dev, dst, strerror(errno));
		sleep_ms(10);
	}
}

/* The overlay root: the read-only image disk under the sandbox's writable disk. */
static void mount_overlay_root(const struct boot_params *bp)
{
	mount_device(bp->root, LOWER, "ext4", MS_RDONLY, NULL);
	/* The upper disk is scratch, a fresh copy at every launch: no cache flushes (each one
	 * a host fdatasync; the one at mount alone stalls the boot 2-3 ms under TCG). */
	if (bp->upper[0])
		mount_device(bp->upper, RW, "ext4", MS_NOATIME, "nobarrier");
	else if (mount_at("tmpfs", RW, "tmpfs", 0, "mode=0755") < 0)
		die("cannot mount tmpfs on " RW ": %s", strerror(errno));
	mkdir(RW "/upper", 0755);
	mkdir(RW "/work", 0755);
	if (mount_at("overlay", NEW_ROOT, "overlay", 0,
		     "lowerdir=" LOWER ",upperdir=" RW "/upper,workdir=" RW "/work") < 0)
		die("cannot mount the overlay root: %s", strerror(errno));
	old_root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* Like switch_root: move the API filesystems and the new root over /, chroot into it. */
static void switch_root(const struct boot_params *bp)
{
	if (!strncmp(bp->root, ROOT_9P, strlen(ROOT_9P)))
		mount_device(bp->root + strlen(ROOT_9P), NEW_ROOT, "9p", 0, OPTS_9P);
	else
		mount_overlay_root(bp);
	static const char *const api[] = {"/dev", "/proc", "/sys"};
	for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
		char dst[64];
		snprintf(dst, sizeof dst, NEW_ROOT "%s", api[i]);
		if (mount_at(api[i], dst, NULL, MS_MOVE, NULL) < 0)
			die("cannot move %s into the new root: %s", api[i], strerror(errno));
	}
	if (chdir(NEW_ROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0)
		die("cannot switch root: %s", strerror(errno));
}

static void mount_runtime(void)
{
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *opts;
	} m[] = {
		{"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
	};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
		if (mount_at(m[i].src, m[i].dst, m[i].type, m[i].flags, m[i].opts) < 0)
			say("cannot mount %s: %s", m[i].dst, strerror(errno));
	static const char *const links[][2] = {
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		symlink(links[i][0], links[i][1]);
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0))
		say("cannot bring lo up: %s", strerror(errno));
	if (s >= 0)
		close(s);
}

void init_system(void)
{
	struct boot_params bp;
	read_cmdline(&bp);
	if (bp.root[0])
		switch_root(&bp);
	mount_runtime();
	loopback_up();
}

/* Reaps children until none is left or ms have passed; 1 when none is left. */
static int reap_all(int ms)
{
	for (int waited = 0;; waited += 10) {
		pid_t r;
		while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (r < 0 && errno == ECHILD)
			return 1;
		if (waited >= ms)
			return 0;
		sleep_ms(10);
	}
}

_Noreturn void init_poweroff(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

_Noreturn void init_shutdown(void)
{
	say("shutting down");
	kill(-1, SIGTERM);
	if (!reap_all(TERM_GRACE_MS)) {
		kill(-1, SIGKILL);
		reap_all(KILL_WAIT_MS);
	}
	sync();
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
		say("cannot remount / read-only: %s", strerror(errno));
	if (old_root >= 0 && fchdir(old_root) == 0 &&
	    mount(NULL, RW_FROM_OLD_ROOT, NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
		say("cannot remount " RW " read-only: %s", strerror(errno));
	init_poweroff();
}
