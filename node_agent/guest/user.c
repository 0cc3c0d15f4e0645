/* user.c — user and group lookup in the guest image's /etc/passwd and /etc/group
 * (no NSS: the agent is static and the image may have no libc of its kind). */
#include "user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWD_FILE "/etc/passwd"
#define GROUP_FILE "/etc/group"
#define MAX_NAME 256

/* A decimal id; -1 unless s is all digits and fits below (uid_t)-1. */
static int parse_id(const char *s, unsigned *out)
{
	if (!*s || strlen(s) > 10)
		return -1;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v >= 0xffffffffULL)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Splits a colon-separated line in place (dropping the newline); returns the field count. */
static int split(char *line, char **f, int max)
{
	line[strcspn(line, "\n")] = 0;
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

/* Finds the passwd entry by name (when name is set) or by uid; fills name, uid, gid. */
static int passwd_find(const char *name, unsigned uid, char *name_out, unsigned *uid_out,
		       unsigned *gid_out)
{
	FILE *fp = fopen(PASSWD_FILE, "re");
	if (!fp)
		return -1;
	char *line = NULL, *f[7];
	size_t cap = 0;
	int found = -1;
	unsigned u, g;
	while (found < 0 && getline(&line, &cap, fp) > 0) {
		if (split(line, f, 7) < 4 || parse_id(f[2], &u) < 0 || parse_id(f[3], &g) < 0)
			continue;
		if (name ? strcmp(f[0], name) != 0 : u != uid)
			continue;
		snprintf(name_out, MAX_NAME, "%s", f[0]);
		*uid_out = u;
		*gid_out = g;
		found = 0;
	}
	free(line);
	fclose(fp);
	return found;
}

/* Resolves a group name to its gid. */
static int group_find(const char *name, unsigned *gid)
{
	FILE *fp = fopen(GROUP_FILE, "re");
	if (!fp)
		return -1;
	char *line = NULL, *f[4];
	size_t cap = 0;
	int found = -1;
	while (found < 0 && getline(&line, &cap, fp) > 0)
		if (split(line, f, 4) >= 3 && !strcmp(f[0], name) && parse_id(f[2], gid) == 0)
			found = 0;
	free(line);
	fclose(fp);
	return found;
}

static int is_member(char *members, const char *name)
{
	for (char *m = strtok(members, ","); m; m = strtok(NULL, ","))
		if (!strcmp(m, name))
			return 1;
	return 0;
}

/* Collects the groups that list `name` as a member. */
static void supplementary(const char *name, struct user_ids *u)
{
	FILE *fp = fopen(GROUP_FILE, "re");
	if (!fp)
		return;
	char *line = NULL, *f[4];
	size_t cap = 0;
	unsigned gid;
	while (u->ngroups < USER_MAX_GROUPS && getline(&line, &cap, fp) > 0)
		if (split(line, f, 4) == 4 && parse_id(f[2], &gid) == 0 && is_member(f[3], name))
			u->groups[u->ngroups++] = gid;
	free(line);
	fclose(fp);
}

int user_resolve(const char *spec, struct user_ids *u, char *msg, size_t msglen)
{
	char user[MAX_NAME], name[MAX_NAME] = "";
	const char *colon = strchr(spec, ':');
	size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
	if (ulen == 0 || ulen >= sizeof user || (colon && !colon[1])) {
		snprintf(msg, msglen, "malformed user %.300s", spec);
		return -1;
	}
	memcpy(user, spec, ulen);
	user[ulen] = 0;

	unsigned uid, gid = 0, id;
	if (parse_id(user, &id) == 0) {
		if (passwd_find(NULL, id, name, &uid, &gid) < 0) {
			uid = id;
			gid = 0;
		}
	} else if (passwd_find(user, 0, name, &uid, &gid) < 0) {
		snprintf(msg, msglen, "no such user %.300s in " PASSWD_FILE, user);
		return -1;
	}
	if (colon && parse_id(colon + 1, &gid) < 0 && group_find(colon + 1, &gid) < 0) {
		snprintf(msg, msglen, "no such group %.300s in " GROUP_FILE, colon + 1);
		return -1;
	}
	u->uid = uid;
	u->gid = gid;
	u->ngroups = 0;
	if (name[0])
		supplementary(name, u);
	return 0;
}
