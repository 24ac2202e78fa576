/*
 * One exchange with the secure module. Through the agent: a new connection
 * per call (so nothing is shared between threads, and a child after fork()
 * never shares a stream with its parent), one HTTP/1.1 POST /v1/raw with
 * the request, the answer read to the end (agent/API.md). Without an agent:
 * the device's raw-message ioctl (docs/protocol.md §2) on a descriptor of
 * its own, under an exclusive flock, so that threads and processes using
 * this library take turns on the device.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* The agent answers within its own deadline (30 s by default); this one
 * only ends a call to an agent that stopped answering at all. */
#define AGENT_TIMEOUT_SECONDS 150

/* The raw-message ioctl of /dev/nsm (and, assumed, /dev/qtsm):
 * _IOWR(0x0A, 0, struct raw). */
#define QTE_IOCTL_RAW 0xC0200A00UL
struct raw {
	uint64_t req_addr, req_len, resp_addr, resp_len;
};

static bool send_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static bool connect_unix(int fd, const char *path)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path)); /* shorter than sun_path: checked at open */
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
		return true;
	if (errno != EINTR && errno != EINPROGRESS)
		return false;
	/* Interrupted: the connection goes on; wait for it. */
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int r;
	do
		r = poll(&p, 1, AGENT_TIMEOUT_SECONDS * 1000);
	while (r < 0 && errno == EINTR);
	int err = 0;
	socklen_t len = sizeof err;
	return r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

/* status_of maps an agent's refusal (a JSON error, agent/API.md) to the
 * closest module status. */
static enum qte_status status_of(int http)
{
	switch (http) {
	case 400:
		return QTE_INVALID_ARGUMENT;
	case 403:
		return QTE_INVALID_OPERATION;
	case 413:
		return QTE_INPUT_TOO_LARGE;
	}
	return QTE_INTERNAL_ERROR;
}

/* header_value finds header name (case-insensitive) in the header block
 * [h, end) and returns its value, or NULL. */
static const char *header_value(const char *h, const char *end, const char *name)
{
	size_t n = strlen(name);
	while (h < end) {
		const char *eol = memchr(h, '\n', (size_t)(end - h));
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - h) > n && strncasecmp(h, name, n) == 0 && h[n] == ':') {
			const char *v = h + n + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			return v;
		}
		h = eol + 1;
	}
	return NULL;
}

static enum qte_status agent_exchange(const char *path, const uint8_t *req, size_t req_len, uint8_t *resp,
	size_t *resp_len)
{
	enum { HEAD = 2048, CAP = HEAD + QTE_MAX_RESPONSE };
	char *buf = malloc(CAP + 1);
	if (buf == NULL)
		return QTE_INTERNAL_ERROR;
	enum qte_status st = QTE_INTERNAL_ERROR;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	struct timeval tv = {.tv_sec = AGENT_TIMEOUT_SECONDS};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (!connect_unix(fd, path))
		goto out;
	int h = snprintf(buf, HEAD,
		"POST /v1/raw HTTP/1.1\r\nHost: qtsm\r\nContent-Type: application/cbor\r\n"
		"Accept: application/cbor\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		req_len);
	if (!send_all(fd, buf, (size_t)h) || !send_all(fd, req, req_len))
		goto out;
	size_t n = 0;
	for (;;) {
		ssize_t k = recv(fd, buf + n, CAP - n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			goto out;
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == CAP) { /* more than any answer can be */
			st = QTE_INVALID_RESPONSE;
			goto out;
		}
	}
	buf[n] = 0;
	/* "HTTP/1.1 200 OK\r\n" ... "\r\n\r\n" body */
	st = QTE_INVALID_RESPONSE;
	char *end = strstr(buf, "\r\n\r\n");
	if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' || end == NULL)
		goto out;
	int status = atoi(buf + 9);
	const char *body = end + 4;
	size_t body_len = n - (size_t)(body - buf);
	const char *cl = header_value(buf, end, "Content-Length");
	char *clend;
	unsigned long want = cl ? strtoul(cl, &clend, 10) : 0;
	if (cl == NULL || clend == cl || want != body_len)
		goto out;
	if (status != 200) {
		st = status_of(status);
		goto out;
	}
	if (body_len > QTE_MAX_RESPONSE)
		goto out;
	memcpy(resp, body, body_len);
	*resp_len = body_len;
	st = QTE_OK;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return st;
}

static enum qte_status device_exchange(const struct qte_route *route, const uint8_t *req, size_t req_len,
	uint8_t *resp, size_t *resp_len)
{
	int fd = open(route->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return QTE_INTERNAL_ERROR;
	int r;
	do
		r = flock(fd, LOCK_EX);
	while (r < 0 && errno == EINTR);
	struct raw msg = {
		.req_addr = (uint64_t)(uintptr_t)req,
		.req_len = req_len,
		.resp_addr = (uint64_t)(uintptr_t)resp,
		.resp_len = route->device_answer,
	};
	if (r == 0) {
		do
			r = ioctl(fd, QTE_IOCTL_RAW, &msg);
		while (r < 0 && errno == EINTR);
	}
	close(fd); /* and the lock with it */
	if (r < 0)
		return errno == EMSGSIZE ? QTE_INPUT_TOO_LARGE : QTE_INTERNAL_ERROR;
	if (msg.resp_len > route->device_answer)
		return QTE_INVALID_RESPONSE;
	*resp_len = (size_t)msg.resp_len;
	return QTE_OK;
}

enum qte_status qte_exchange(const struct qte_route *route, const uint8_t *req, size_t req_len, uint8_t *resp,
	size_t *resp_len)
{
	if (route->kind == QTE_AGENT)
		return agent_exchange(route->path, req, req_len, resp, resp_len);
	return device_exchange(route, req, req_len, resp, resp_len);
}
