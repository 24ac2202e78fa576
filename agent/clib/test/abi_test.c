#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
/*
 * The ABI test: every call of libqtsm and libnsm, success and refusal,
 * against a fresh qtsm-agent on the simulator (clib_test.go starts it and
 * sets QTSM_SOCKET), plus handles, fork and the device fallback.
 *
 *   abi_test agent DOCFILE     the whole interface; writes one attestation
 *                              document to DOCFILE for the Go side to verify
 *   abi_test no-module         neither agent nor device: init fails
 *   abi_test device-unusable   QTSM_DEVICE is not a secure module: init
 *                              succeeds, calls fail with INTERNAL_ERROR
 *   abi_test denied            the agent's socket is not ours to connect to:
 *                              init fails with -EACCES
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nsm.h"
#include "qtsm_lib.h"

static int checks, failed;

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                   \
		checks++;                                                                                      \
		if (!(cond)) {                                                                                 \
			failed++;                                                                              \
			fprintf(stderr, "abi_test.c:%d: check failed: %s: ", __LINE__, #cond);                  \
			fprintf(stderr, __VA_ARGS__);                                                          \
			fputc('\n', stderr);                                                                   \
		}                                                                                              \
	} while (0)

/* extend(zero48, 01 02 03) with SHA-384: docs/protocol.md §2. */
static const uint8_t kat[48] = {0xcb, 0x17, 0x8f, 0xcd, 0x3f, 0x32, 0x82, 0x44, 0xc0, 0x5c, 0x62, 0x48, 0x72,
	0x3f, 0xd0, 0x68, 0xb3, 0xa1, 0xdd, 0xa8, 0x78, 0xe1, 0xab, 0x8b, 0xe9, 0x11, 0x09, 0x8f, 0x19, 0x99, 0x58,
	0xad, 0xd5, 0x5d, 0x0c, 0x27, 0xf0, 0x48, 0x26, 0xd2, 0x7b, 0x44, 0xd9, 0x49, 0xa6, 0x50, 0x69, 0x4e};

static const uint8_t three[3] = {1, 2, 3};

static bool all(const uint8_t *b, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != v)
			return false;
	return true;
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	return memmem(hay, n, needle, m) != NULL;
}

static void describe(int q, int n)
{
	describe_qtsm d;
	memset(&d, 0xAA, sizeof d);
	int rc = qtsm_get_describe(q, &d);
	CHECK(rc == NO_ERROR, "qtsm_get_describe = %d", rc);
	CHECK(d.max_pcrs == 32 && d.digest == QTSM_SHA384, "max_pcrs %u digest %d", d.max_pcrs, d.digest);
	CHECK(d.module_id_len > 0 && d.module_id_len < sizeof d.module_id && d.module_id[d.module_id_len] == 0,
		"module_id_len %u", d.module_id_len);
	CHECK(d.locked_pcrs_num == 16, "locked_pcrs_num %u", d.locked_pcrs_num);
	for (uint32_t i = 0; i < 16 && i < d.locked_pcrs_num; i++)
		CHECK(d.locked_pcrs[i] == i, "locked_pcrs[%u] = %u", i, d.locked_pcrs[i]);
	CHECK(qtsm_get_describe(q, NULL) == INVALID_ARGUMENT, "qtsm_get_describe(NULL)");

	NsmDescription nd;
	memset(&nd, 0xAA, sizeof nd);
	ErrorCode ec = nsm_get_description(n, &nd);
	CHECK(ec == ERROR_CODE_SUCCESS, "nsm_get_description = %d", ec);
	CHECK(nd.max_pcrs == 32 && nd.digest == DIGEST_SHA384 && nd.locked_pcrs_len == 16, "nsm description %u %d %u",
		nd.max_pcrs, nd.digest, nd.locked_pcrs_len);
	CHECK(nd.module_id_len == d.module_id_len && memcmp(nd.module_id, d.module_id, d.module_id_len) == 0 &&
			nd.module_id[nd.module_id_len] == 0,
		"module ids differ");
	printf("abi_test: module_id=%s\n", d.module_id);
}

static void pcrs(int q, int n)
{
	uint8_t v[64], w[64];
	uint32_t len = sizeof v;
	bool locked = false;
	int rc = qtsm_describe_pcr(q, 0, &locked, v, &len);
	CHECK(rc == NO_ERROR && len == 48 && locked, "qtsm_describe_pcr(0) = %d len %u locked %d", rc, len, locked);

	/* Too small: the needed length back, nothing written. */
	memset(w, 0xAA, sizeof w);
	len = 10;
	rc = qtsm_describe_pcr(q, 0, &locked, w, &len);
	CHECK(rc == BUFFER_TOO_SMALL && len == 48 && all(w, sizeof w, 0xAA), "small buffer: %d len %u", rc, len);
	len = 0;
	rc = qtsm_describe_pcr(q, 0, &locked, NULL, &len);
	CHECK(rc == BUFFER_TOO_SMALL && len == 48, "NULL buffer: %d len %u", rc, len);
	CHECK(qtsm_describe_pcr(q, 0, NULL, w, &len) == INVALID_ARGUMENT, "NULL locked");

	uint32_t nlen = sizeof w;
	bool nlock = false;
	ErrorCode ec = nsm_describe_pcr(n, 0, &nlock, w, &nlen);
	CHECK(ec == ERROR_CODE_SUCCESS && nlen == 48 && nlock && memcmp(v, w, 48) == 0, "nsm_describe_pcr(0) = %d", ec);
	nlen = 8;
	ec = nsm_describe_pcr(n, 0, &nlock, w, &nlen);
	CHECK(ec == ERROR_CODE_BUFFER_TOO_SMALL && nlen == 48, "nsm small buffer: %d len %u", ec, nlen);

	len = sizeof v;
	rc = qtsm_describe_pcr(q, 32, &locked, v, &len);
	CHECK(rc == INVALID_INDEX, "qtsm_describe_pcr(32) = %d, want INVALID_INDEX", rc);
	nlen = sizeof w;
	ec = nsm_describe_pcr(n, 32, &nlock, w, &nlen);
	CHECK(ec == ERROR_CODE_INVALID_INDEX, "nsm_describe_pcr(32) = %d, want ERROR_CODE_INVALID_INDEX", ec);

	/* Extend PCR16 with 01 02 03: the known answer, seen by both. */
	len = sizeof v;
	rc = qtsm_extend_pcr(q, 16, three, 3, v, &len);
	CHECK(rc == NO_ERROR && len == 48 && memcmp(v, kat, 48) == 0, "qtsm_extend_pcr(16, 010203) = %d", rc);
	nlen = sizeof w;
	ec = nsm_describe_pcr(n, 16, &nlock, w, &nlen);
	CHECK(ec == ERROR_CODE_SUCCESS && !nlock && memcmp(w, kat, 48) == 0, "PCR16 after extend = %d", ec);
	CHECK(qtsm_extend_pcr(q, 17, NULL, 0, v, &len) == INVALID_ARGUMENT, "extend NULL data");
	CHECK(nsm_extend_pcr(n, 17, NULL, 0, v, &len) == ERROR_CODE_INVALID_ARGUMENT, "nsm extend NULL data");
	len = sizeof v;
	rc = qtsm_extend_pcr(q, 3, three, 3, v, &len);
	CHECK(rc == INVALID_INDEX, "qtsm_extend_pcr(3) = %d, want INVALID_INDEX", rc);
	static uint8_t big[5000];
	len = sizeof v;
	rc = qtsm_extend_pcr(q, 17, big, sizeof big, v, &len);
	CHECK(rc == INPUT_TOO_LARGE, "extend with %zu bytes = %d, want INPUT_TOO_LARGE", sizeof big, rc);
	/* A small output buffer after an extension: it happened, the value
	 * did not fit. */
	nlen = 8;
	ec = nsm_extend_pcr(n, 18, three, 3, w, &nlen);
	CHECK(ec == ERROR_CODE_BUFFER_TOO_SMALL && nlen == 48, "nsm_extend_pcr small = %d len %u", ec, nlen);
	len = sizeof v;
	rc = qtsm_describe_pcr(q, 18, &locked, v, &len);
	CHECK(rc == NO_ERROR && memcmp(v, kat, 48) == 0, "PCR18 was extended = %d", rc);

	/* Locks. */
	rc = qtsm_lock_pcr(q, 16, &locked);
	CHECK(rc == NO_ERROR && locked, "qtsm_lock_pcr(16) = %d locked %d", rc, locked);
	rc = qtsm_lock_pcr(q, 16, &locked);
	CHECK(rc == READ_ONLY_INDEX && !locked, "qtsm_lock_pcr(16) again = %d, want READ_ONLY_INDEX", rc);
	nlen = sizeof w;
	ec = nsm_extend_pcr(n, 16, three, 3, w, &nlen);
	CHECK(ec == ERROR_CODE_READ_ONLY_INDEX, "extend locked PCR16 = %d, want ERROR_CODE_READ_ONLY_INDEX", ec);
	const uint16_t some[] = {17, 19};
	rc = qtsm_lock_pcrs(q, 2, some, &locked);
	CHECK(rc == NO_ERROR && locked, "qtsm_lock_pcrs({17,19}) = %d", rc);
	len = sizeof v;
	rc = qtsm_describe_pcr(q, 19, &locked, v, &len);
	CHECK(rc == NO_ERROR && locked, "PCR19 locked = %d %d", rc, locked);
	CHECK(qtsm_lock_pcrs(q, 33, some, &locked) == INVALID_INDEX, "qtsm_lock_pcrs count 33");
	CHECK(qtsm_lock_pcrs(q, 2, NULL, &locked) == INVALID_ARGUMENT, "qtsm_lock_pcrs NULL range");
	CHECK(nsm_lock_pcr(n, 0) != ERROR_CODE_SUCCESS, "nsm_lock_pcr(0) succeeded");
	ec = nsm_lock_pcrs(n, 33);
	CHECK(ec == ERROR_CODE_INVALID_INDEX, "nsm_lock_pcrs(33) = %d", ec);
	ec = nsm_lock_pcrs(n, 32);
	CHECK(ec == ERROR_CODE_SUCCESS, "nsm_lock_pcrs(32) = %d", ec);
	nlen = sizeof w;
	ec = nsm_describe_pcr(n, 31, &nlock, w, &nlen);
	CHECK(ec == ERROR_CODE_SUCCESS && nlock, "PCR31 after nsm_lock_pcrs(32) = %d locked %d", ec, nlock);
}

static void attest(int q, int n, const char *docfile)
{
	static uint8_t doc[32768];
	static const char nonce[] = "c-abi-test nonce";
	static const char user[] = "c-abi-test user data";
	uint32_t len = 16;
	int rc = qtsm_get_attestation(q, (const uint8_t *)user, sizeof user - 1, (const uint8_t *)nonce, sizeof nonce - 1,
		NULL, 0, doc, &len);
	CHECK(rc == BUFFER_TOO_SMALL && len > 1000 && all(doc, 16, 0), "small document buffer = %d len %u", rc, len);
	uint32_t need = len;
	len = 0;
	rc = qtsm_get_attestation(q, NULL, 0, NULL, 0, NULL, 0, NULL, &len);
	CHECK(rc == BUFFER_TOO_SMALL && len > 1000, "NULL document buffer = %d len %u", rc, len);
	len = need + 64; /* a new document: its signature may be a few bytes longer or shorter */
	rc = qtsm_get_attestation(q, (const uint8_t *)user, sizeof user - 1, (const uint8_t *)nonce, sizeof nonce - 1,
		NULL, 0, doc, &len);
	CHECK(rc == NO_ERROR && len > 1000, "qtsm_get_attestation = %d len %u", rc, len);
	CHECK(contains(doc, len, nonce, sizeof nonce - 1) && contains(doc, len, user, sizeof user - 1),
		"the document lacks the nonce or user data");
	if (docfile != NULL) {
		FILE *f = fopen(docfile, "wb");
		CHECK(f != NULL && fwrite(doc, 1, len, f) == len && fclose(f) == 0, "writing %s", docfile);
	}
	static uint8_t over[513];
	len = sizeof doc;
	rc = qtsm_get_attestation(q, over, sizeof over, NULL, 0, NULL, 0, doc, &len);
	CHECK(rc == INPUT_TOO_LARGE, "513 bytes of user data = %d, want INPUT_TOO_LARGE", rc);
	CHECK(qtsm_get_attestation(q, NULL, 0, NULL, 0, NULL, 0, doc, NULL) == INVALID_ARGUMENT, "NULL length");

	static const char pk[] = "not really a key, but bytes";
	len = sizeof doc;
	ErrorCode ec = nsm_get_attestation_doc(n, NULL, 0, (const uint8_t *)"nsm nonce", 9, (const uint8_t *)pk,
		sizeof pk - 1, doc, &len);
	CHECK(ec == ERROR_CODE_SUCCESS && contains(doc, len, "nsm nonce", 9) && contains(doc, len, pk, sizeof pk - 1),
		"nsm_get_attestation_doc = %d", ec);
	len = sizeof doc;
	ec = nsm_get_attestation_doc(n, over, sizeof over, NULL, 0, NULL, 0, doc, &len);
	CHECK(ec == ERROR_CODE_INPUT_TOO_LARGE, "nsm 513 bytes of user data = %d", ec);
}

static void randomness(int q, int n)
{
	uint8_t a[1000], b[1000];
	memset(a, 0, sizeof a);
	memset(b, 0, sizeof b);
	CHECK(qtsm_get_random(q, a, sizeof a) == NO_ERROR && qtsm_get_random(q, b, sizeof b) == NO_ERROR,
		"qtsm_get_random");
	CHECK(!all(a + 900, 100, 0) && memcmp(a, b, sizeof a) != 0, "qtsm_get_random filled nothing new");
	CHECK(qtsm_get_random(q, a, 0) == INVALID_ARGUMENT && qtsm_get_random(q, NULL, 8) == INVALID_ARGUMENT,
		"qtsm_get_random bad arguments");
	uintptr_t len = 256;
	ErrorCode ec = nsm_get_random(n, a, &len);
	CHECK(ec == ERROR_CODE_SUCCESS && len > 0 && len <= 256, "nsm_get_random = %d len %zu", ec, (size_t)len);
	len = 5;
	memset(a, 0, sizeof a);
	ec = nsm_get_random(n, a, &len);
	CHECK(ec == ERROR_CODE_SUCCESS && len == 5 && all(a + 5, sizeof a - 5, 0), "nsm_get_random(5) = %d len %zu", ec,
		(size_t)len);
	len = 0;
	CHECK(nsm_get_random(n, a, &len) == ERROR_CODE_INVALID_ARGUMENT, "nsm_get_random len 0");
}

static void handles(void)
{
	int h[10];
	for (int i = 0; i < 10; i++) {
		h[i] = i % 2 ? qtsm_lib_init() : nsm_lib_init();
		CHECK(h[i] > 2, "init %d = %d", i, h[i]);
	}
	uint8_t v[48];
	uint32_t len = sizeof v;
	bool locked;
	CHECK(qtsm_describe_pcr(12345, 0, &locked, v, &len) == INVALID_ARGUMENT, "unknown handle");
	CHECK(nsm_describe_pcr(-1, 0, &locked, v, &len) == ERROR_CODE_INVALID_ARGUMENT, "negative handle");
	for (int i = 0; i < 10; i++)
		i % 2 ? qtsm_lib_exit(h[i]) : nsm_lib_exit(h[i]);
	len = sizeof v;
	CHECK(qtsm_describe_pcr(h[1], 0, &locked, v, &len) == INVALID_ARGUMENT, "closed handle");
	qtsm_lib_exit(h[1]); /* twice: nothing happens */
}

/* forked checks that a child uses a handle its parent opened while the
 * parent uses it too. */
static void forked(void)
{
	int n = nsm_lib_init();
	CHECK(n > 0, "nsm_lib_init = %d", n);
	fflush(NULL);
	pid_t pid = fork();
	static uint8_t doc[32768];
	uint32_t len = sizeof doc;
	const char *nonce = pid == 0 ? "child nonce" : "parent nonce";
	ErrorCode ec = nsm_get_attestation_doc(n, NULL, 0, (const uint8_t *)nonce, (uint32_t)strlen(nonce), NULL, 0, doc, &len);
	bool ok = ec == ERROR_CODE_SUCCESS && contains(doc, len, nonce, strlen(nonce));
	if (pid == 0)
		_exit(ok ? 0 : 1);
	CHECK(ok, "parent after fork: %d", ec);
	int status = -1;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child after fork: status %d", status);
	nsm_lib_exit(n);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "agent") == 0) {
		int q = qtsm_lib_init(), n = nsm_lib_init();
		CHECK(q > 0 && n > 0 && q != n, "qtsm_lib_init = %d, nsm_lib_init = %d", q, n);
		describe(q, n);
		pcrs(q, n);
		attest(q, n, argc > 2 ? argv[2] : NULL);
		randomness(q, n);
		handles();
		forked();
		qtsm_lib_exit(q);
		nsm_lib_exit(n);
	} else if (strcmp(mode, "no-module") == 0) {
		int q = qtsm_lib_init(), n = nsm_lib_init();
		CHECK(q < 0 && n < 0, "init without agent or device: %d %d, want < 0", q, n);
	} else if (strcmp(mode, "device-unusable") == 0) {
		int q = qtsm_lib_init(), n = nsm_lib_init();
		CHECK(q > 0 && n > 0, "init on QTSM_DEVICE: %d %d", q, n);
		uint8_t v[48];
		uint32_t len = sizeof v;
		bool locked;
		int rc = qtsm_describe_pcr(q, 0, &locked, v, &len);
		CHECK(rc == INTERNAL_ERROR, "describe_pcr on a device that is not a module = %d", rc);
		ErrorCode ec = nsm_describe_pcr(n, 0, &locked, v, &len);
		CHECK(ec == ERROR_CODE_INTERNAL_ERROR, "nsm describe_pcr on a device that is not a module = %d", ec);
		qtsm_lib_exit(q);
		nsm_lib_exit(n);
	} else if (strcmp(mode, "denied") == 0) {
		int q = qtsm_lib_init(), n = nsm_lib_init();
		CHECK(q == -EACCES && n == -EACCES, "init on a socket we may not connect to: %d %d, want %d", q, n, -EACCES);
	} else {
		fprintf(stderr, "usage: abi_test agent DOCFILE | no-module | device-unusable | denied\n");
		return 2;
	}
	printf("abi_test %s: %d checks, %d failed\n", mode, checks, failed);
	return failed ? 1 : 0;
}
