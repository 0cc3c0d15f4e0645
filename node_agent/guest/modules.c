/* modules.c — the module loader for a stock kernel such as Debian's cloud kernel, whose
 * virtio and overlayfs drivers are modules: its initramfs carries them in /lib/modules
 * with a list, /lib/modules/load, one file name a line in dependency order (written by
 * node_agent/provision.py from modules.dep). They load before anything is mounted or the
 * channel's port is looked for. Parameters on the kernel command line (MODULE.PARAM=VALUE)
 * are passed on, as modprobe does: the kernel itself applies them only to built-in code.
 * Values with spaces in quotes are not supported. */
#include "modules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

#define MODULES_DIR "/lib/modules"
#define LOAD_LIST MODULES_DIR "/load"

/* Reads a whole small file into buf (NUL-terminated); dies when it does not fit. */
static ssize_t read_text(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, n);
	int err = errno;
	close(fd);
	if (r < 0)
		die("cannot read %s: %s", path, strerror(err));
	if ((size_t)r == n)
		die("%s is too long (more than %zu bytes)", path, n - 1);
	buf[r] = 0;
	return r;
}

/* 1 when the module part of a command-line token ("virtio_mmio.device=...") names the
 * module file ("virtio_mmio.ko"); '-' and '_' are the same in module names. */
static int names_module(const char *tok, size_t tlen, const char *file)
{
	size_t flen = strcspn(file, ".");
	if (tlen != flen)
		return 0;
	for (size_t i = 0; i < tlen; i++) {
		char a = tok[i] == '-' ? '_' : tok[i], b = file[i] == '-' ? '_' : file[i];
		if (a != b)
			return 0;
	}
	return 1;
}

/* The module's PARAM=VALUE words from the kernel command line, space-separated. */
static void module_params(const char *cmdline, const char *file, char *out, size_t n)
{
	size_t used = 0;
	out[0] = 0;
	for (const char *tok = cmdline; *tok;) {
		size_t len = strcspn(tok, " \t\n");
		const char *dot = memchr(tok, '.', len), *eq = memchr(tok, '=', len);
		if (dot && (!eq || dot < eq) && names_module(tok, (size_t)(dot - tok), file)) {
			size_t plen = len - (size_t)(dot + 1 - tok);
			if (used + plen + 2 > n)
				die("kernel command-line parameters for %s are too long", file);
			if (used)
				out[used++] = ' ';
			memcpy(out + used, dot + 1, plen);
			used += plen;
			out[used] = 0;
		}
		tok += len;
		tok += strspn(tok, " \t\n");
	}
}

void modules_load(void)
{
	static char list[8192], cmdline[4096];
	if (read_text(LOAD_LIST, list, sizeof list) < 0) {
		if (errno != ENOENT)
			die("cannot open " LOAD_LIST ": %s", strerror(errno));
		return;
	}
	if (read_text("/proc/cmdline", cmdline, sizeof cmdline) < 0)
		die("cannot open /proc/cmdline: %s", strerror(errno));
	char *save = NULL;
	for (char *file = strtok_r(list, "\n", &save); file; file = strtok_r(NULL, "\n", &save)) {
		char path[300], params[1024];
		snprintf(path, sizeof path, MODULES_DIR "/%s", file);
		module_params(cmdline, file, params, sizeof params);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("cannot open module %s: %s", path, strerror(errno));
		/* ENOENT from the kernel: a symbol it needs is in no module loaded so far. */
		if (syscall(SYS_finit_module, fd, params, 0) < 0)
			die("cannot load module %s: %s", file,
			    errno == ENOENT ? "unknown symbol (a module it needs is not loaded)"
					    : strerror(errno));
		close(fd);
	}
}
