/*
 * cinit: a minimal C PID 1 doing the steps of qtenclave's init that cost
 * kernel time, in the same order, without the Go runtime: the baseline
 * scripts/bench/init-vs-c.sh compares init's own time against, under the
 * same QEMU TCG. It keeps the boot contract (heartbeat, exit status to the
 * parent, reboot) so that qtenclave run treats it as any enclave. No agent,
 * no launch.json (it reads /cmd and /env), minimal error handling: a
 * measuring tool, not an init to use.
 *
 * Prints "cinit: own time <ms>ms (heartbeat <ms>ms excluded)" like init's
 * "own time" line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void say(const char *what, double t0)
{
	dprintf(2, "cinit: step %s in %.3fms\n", what, now_ms() - t0);
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap + 1);
	for (;;) {
		ssize_t r = read(fd, b + n, cap - n);
		if (r <= 0)
			break;
		n += r;
		if (n == cap)
			b = realloc(b, (cap *= 2) + 1);
	}
	close(fd);
	b[n] = 0;
	if (len)
		*len = n;
	return b;
}

/* lines splits b at newlines into a NULL-terminated array. */
static char **lines(char *b)
{
	size_t n = 0, cap = 8;
	char **v = malloc(cap * sizeof *v);
	for (char *s = b; s && *s;) {
		char *e = strchr(s, '\n');
		if (e)
			*e = 0;
		if (n + 1 >= cap)
			v = realloc(v, (cap *= 2) * sizeof *v);
		v[n++] = s;
		s = e ? e + 1 : NULL;
	}
	v[n] = NULL;
	return v;
}

static int vsock_send(unsigned port, const void *msg, size_t len, int echo)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = 3, .svm_port = port};
	char c;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || write(fd, msg, len) != (ssize_t)len ||
	    (echo && read(fd, &c, 1) != 1)) {
		dprintf(2, "cinit: vsock 3:%u: %s\n", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

struct nsm_raw {
	uint64_t req, req_len, resp, resp_len;
};

int main(void)
{
	double start = now_ms(), t;

	t = now_ms();
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	say("devtmpfs", t);
	t = now_ms();
	int con = open("/dev/console", O_RDWR | O_NOCTTY);
	if (con >= 0) {
		dup2(con, 0), dup2(con, 1), dup2(con, 2);
		if (con > 2)
			close(con);
	}
	say("console", t);
	t = now_ms();
	mkdir("/proc", 0555);
	mount("proc", "/proc", "proc", 0, NULL);
	free(slurp("/proc/cmdline", NULL));
	say("cmdline", t);

	t = now_ms();
	int mfd = open("/nsm.ko", O_RDONLY | O_CLOEXEC);
	if (mfd >= 0) {
		if (syscall(SYS_finit_module, mfd, "", 0) < 0)
			dprintf(2, "cinit: finit_module: %s\n", strerror(errno));
		close(mfd);
	}
	struct stat st;
	for (int i = 0; i < 2000 && stat("/dev/nsm", &st) < 0; i++)
		usleep(1000);
	say("modules+device", t);

	t = now_ms();
	int nsm = open("/dev/nsm", O_RDWR | O_CLOEXEC);
	if (nsm >= 0) {
		static unsigned char req[] = "\x69GetRandom", resp[0x3000];
		struct nsm_raw m = {(uintptr_t)req, sizeof req - 1, (uintptr_t)resp, sizeof resp};
		if (ioctl(nsm, 0xC0200A00, &m) == 0 && m.resp_len >= 64) {
			struct {
				int count, size;
				unsigned char buf[64];
			} e = {.count = 512, .size = 64};
			memcpy(e.buf, resp + m.resp_len - 64, 64);
			int r = open("/dev/random", O_RDWR | O_CLOEXEC);
			if (ioctl(r, RNDADDENTROPY, &e) < 0)
				dprintf(2, "cinit: RNDADDENTROPY: %s\n", strerror(errno));
			close(r);
		}
		close(nsm);
	}
	char rb[1];
	if (getrandom(rb, 1, GRND_NONBLOCK) != 1)
		getrandom(rb, 1, 0);
	say("entropy", t);

	double hb = now_ms();
	unsigned char b7 = 0xB7;
	vsock_send(9000, &b7, 1, 1);
	hb = now_ms() - hb;
	dprintf(2, "cinit: step heartbeat in %.3fms\n", hb);

	t = now_ms();
	char **argv = lines(slurp("/cmd", NULL));
	char *envb = slurp("/env", NULL);
	char **envp = envb ? lines(envb) : (char *[]){NULL};
	say("config", t);

	t = now_ms();
	mount("/rootfs", "/rootfs", NULL, MS_BIND | MS_REC, NULL);
	chdir("/rootfs");
	mount(".", "/", NULL, MS_MOVE, NULL);
	chroot(".");
	chdir("/");
	say("switch-root", t);

	t = now_ms();
	static const struct {
		const char *src, *dst, *type, *data;
		unsigned long flags;
	} mt[] = {
		{"proc", "/proc", "proc", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
		{"devtmpfs", "/dev", "devtmpfs", NULL, MS_NOSUID},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666", MS_NOSUID | MS_NOEXEC},
		{"tmpfs", "/dev/shm", "tmpfs", NULL, MS_NOSUID | MS_NODEV},
		{"tmpfs", "/run", "tmpfs", "mode=0755", MS_NOSUID | MS_NODEV},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
	};
	for (size_t i = 0; i < sizeof mt / sizeof mt[0]; i++) {
		mkdir(mt[i].dst, 0755);
		if (mount(mt[i].src, mt[i].dst, mt[i].type, mt[i].flags, mt[i].data) < 0 && errno != EBUSY)
			dprintf(2, "cinit: mount %s: %s\n", mt[i].dst, strerror(errno));
	}
	symlink("/proc/self/fd", "/dev/fd");
	symlink("/proc/self/fd/0", "/dev/stdin");
	symlink("/proc/self/fd/1", "/dev/stdout");
	symlink("/proc/self/fd/2", "/dev/stderr");
	say("mounts", t);

	t = now_ms();
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (s >= 0)
		close(s);
	sethostname("enclave", 7);
	int h = open("/etc/hosts", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (h >= 0) {
		dprintf(h, "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tenclave\n");
		close(h);
	}
	struct rlimit rl = {65536, 65536};
	setrlimit(RLIMIT_NOFILE, &rl);
	say("lo+hostname+hosts+rlimits", t);

	t = now_ms();
	pid_t pid = vfork();
	if (pid == 0) {
		setsid();
		execve(argv[0], argv, envp);
		_exit(127);
	}
	say("exec", t);
	double own = now_ms() - start - hb;
	dprintf(2, "cinit: own time %.3fms (heartbeat %.3fms excluded)\n", own, hb);

	int ws = 0;
	for (;;) {
		pid_t w = wait(&ws);
		if (w == pid || (w < 0 && errno == ECHILD))
			break;
	}
	char msg[32];
	int n = WIFSIGNALED(ws) ? snprintf(msg, sizeof msg, "SIGNAL %d\n", WTERMSIG(ws))
				: snprintf(msg, sizeof msg, "EXIT %d\n", WEXITSTATUS(ws));
	dprintf(2, "qtenclave-exit: code=%d signal=0 reason=exited\n", WIFEXITED(ws) ? WEXITSTATUS(ws) : 128);
	sync();
	vsock_send(9001, msg, n, 0);
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
