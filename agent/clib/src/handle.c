/*
 * The handle table: the one piece of global state. A handle is a real file
 * descriptor (the device, or an O_PATH descriptor of the agent's socket),
 * so it is > 0 as the vendors' handles are, and a program that closes it
 * by mistake closes nothing of its own. Slots are claimed and released
 * with atomic operations only: no lock, so a fork() in another thread can
 * never leave the child with a lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define SLOTS 64

enum { FREE = 0, BUSY = 1, READY = 2 };

static struct slot {
	int state; /* FREE, BUSY (being filled or emptied), READY */
	int fd;
	struct qte_route route;
} slots[SLOTS];

static bool claim(struct slot *s, int from, int to)
{
	return __atomic_compare_exchange_n(&s->state, &from, to, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* answer_size is the answer buffer the device's driver expects: QEMU's
 * NSM wants exactly 0x3000 bytes; Qingtian's library hands 0x6000. */
static size_t answer_size(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return strcmp(base, "qtsm") == 0 ? 0x6000 : 0x3000;
}

/* above_stdio moves fd above 2, so that a handle is never 0 and never
 * one of the standard streams a program closed. */
static int above_stdio(int fd)
{
	if (fd > 2)
		return fd;
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int e = errno;
	close(fd);
	errno = e;
	return nfd;
}

int qte_open(const char *const *devices)
{
	struct qte_route route = {0};
	const char *sock = getenv("QTSM_SOCKET");
	const char *dev = getenv("QTSM_DEVICE");
	struct stat st;
	int fd = -1;
	if (sock == NULL || *sock == 0)
		sock = "/run/qtsm.sock";
	bool seen = stat(sock, &st) == 0;
	if (!seen && errno != ENOENT && errno != ENOTDIR)
		return -errno; /* there may be an agent we cannot see: never go around it */
	if (seen && S_ISSOCK(st.st_mode)) {
		if (strlen(sock) >= sizeof route.path)
			return -ENAMETOOLONG;
		/* Connecting needs write permission on the socket: say so now
		 * rather than at the first call. */
		if (faccessat(AT_FDCWD, sock, W_OK, AT_EACCESS) != 0)
			return -errno;
		fd = open(sock, O_PATH | O_CLOEXEC);
		route.kind = QTE_AGENT;
		strcpy(route.path, sock);
	} else {
		/* No agent: the device itself, the first that opens. */
		const char *one[] = {dev, NULL};
		if (dev != NULL && *dev != 0)
			devices = one;
		errno = ENOENT;
		for (; *devices != NULL && fd < 0; devices++) {
			if (strlen(*devices) >= sizeof route.path) {
				errno = ENAMETOOLONG;
				continue;
			}
			fd = open(*devices, O_RDWR | O_CLOEXEC);
			if (fd >= 0) {
				route.kind = QTE_DEVICE;
				strcpy(route.path, *devices);
				route.device_answer = answer_size(*devices);
			}
		}
	}
	if (fd < 0 || (fd = above_stdio(fd)) < 0)
		return errno ? -errno : -EIO;
	for (int i = 0; i < SLOTS; i++) {
		if (claim(&slots[i], FREE, BUSY)) {
			slots[i].route = route;
			__atomic_store_n(&slots[i].fd, fd, __ATOMIC_RELAXED);
			__atomic_store_n(&slots[i].state, READY, __ATOMIC_RELEASE);
			return fd;
		}
	}
	close(fd);
	return -EMFILE;
}

void qte_close(int handle)
{
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];
		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == READY && __atomic_load_n(&s->fd, __ATOMIC_RELAXED) == handle &&
			claim(s, READY, BUSY)) {
			__atomic_store_n(&s->fd, -1, __ATOMIC_RELAXED);
			close(handle);
			__atomic_store_n(&s->state, FREE, __ATOMIC_RELEASE);
			return;
		}
	}
}

bool qte_lookup(int handle, struct qte_route *route)
{
	if (handle <= 0)
		return false;
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];
		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == READY && __atomic_load_n(&s->fd, __ATOMIC_RELAXED) == handle) {
			*route = s->route;
			return true;
		}
	}
	return false;
}
