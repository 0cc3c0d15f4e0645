/* user.h — resolving an EXEC user (field 4) against the guest's /etc/passwd and /etc/group. */
#ifndef CORRAL_USER_H
#define CORRAL_USER_H

#include <stddef.h>
#include <sys/types.h>

#define USER_MAX_GROUPS 256

struct user_ids {
	uid_t uid;
	gid_t gid;
	gid_t groups[USER_MAX_GROUPS]; /* supplementary groups from /etc/group */
	int ngroups;
};

/* spec is "user" or "user:group", each a name or a number. A uid missing from
 * /etc/passwd gets gid 0 unless a group is given (as container runtimes do).
 * Returns 0, or -1 with the reason in msg. */
int user_resolve(const char *spec, struct user_ids *u, char *msg, size_t msglen);

#endif
