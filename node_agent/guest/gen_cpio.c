/* gen_cpio.c — build tool (host compiler): writes an uncompressed newc cpio archive from
 * a list of dir/nod/file lines (see initramfs.list). Owners are root and mtimes 0, so it
 * needs no root privileges and its output is byte-for-byte reproducible. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static FILE *out;
static unsigned ino = 1;
static unsigned long long written;

static void put(const void *p, size_t n)
{
	if (fwrite(p, 1, n, out) != n) {
		perror("gen_cpio: write");
		exit(1);
	}
	written += n;
}

static void pad4(void)
{
	static const char zeros[4];
	put(zeros, (4 - written % 4) % 4);
}

static void entry(const char *name, unsigned mode, unsigned nlink, unsigned long size,
		  unsigned rmaj, unsigned rmin, const void *data)
{
	char hdr[111];
	while (*name == '/')
		name++;
	snprintf(hdr, sizeof hdr, "070701%08X%08X%08X%08X%08X%08X%08lX%08X%08X%08X%08X%08X%08X",
		 ino++, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin,
		 (unsigned)strlen(name) + 1, 0);
	put(hdr, 110);
	put(name, strlen(name) + 1);
	pad4();
	put(data, size);
	pad4();
}

static void *slurp(const char *path, unsigned long *size)
{
	FILE *fp = fopen(path, "rb");
	struct stat st;
	if (!fp || fstat(fileno(fp), &st) < 0) {
		perror(path);
		exit(1);
	}
	void *p = malloc((size_t)st.st_size + 1);
	if (!p || fread(p, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
		perror(path);
		exit(1);
	}
	fclose(fp);
	*size = (unsigned long)st.st_size;
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: gen_cpio LIST OUTPUT\n");
		return 2;
	}
	FILE *list = fopen(argv[1], "r");
	if (!list || !(out = fopen(argv[2], "wb"))) {
		perror("gen_cpio");
		return 1;
	}
	char line[1024], name[512], src[512], type;
	unsigned mode, maj, min;
	for (int lineno = 1; fgets(line, sizeof line, list); lineno++) {
		if (line[0] == '#' || line[strspn(line, " \t\n")] == 0)
			continue;
		if (sscanf(line, "dir %511s %o", name, &mode) == 2) {
			entry(name, S_IFDIR | mode, 2, 0, 0, 0, "");
		} else if (sscanf(line, "nod %511s %o %c %u %u", name, &mode, &type, &maj, &min) == 5) {
			entry(name, (type == 'b' ? S_IFBLK : S_IFCHR) | mode, 1, 0, maj, min, "");
		} else if (sscanf(line, "file %511s %o %511s", name, &mode, src) == 3) {
			unsigned long size;
			void *data = slurp(src, &size);
			entry(name, S_IFREG | mode, 1, size, 0, 0, data);
			free(data);
		} else {
			fprintf(stderr, "%s:%d: bad line: %s", argv[1], lineno, line);
			remove(argv[2]);
			return 1;
		}
	}
	entry("TRAILER!!!", 0, 1, 0, 0, 0, "");
	if (fclose(out) != 0) {
		perror("gen_cpio");
		return 1;
	}
	return 0;
}
