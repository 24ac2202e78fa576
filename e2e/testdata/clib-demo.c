/*
 * clib-demo: the e2e workload for the drop-in C libraries (agent/clib),
 * linked statically against libqtsm.a and libnsm.a. In the enclave it uses
 * both interfaces through qtsm-agent, then the device itself with no agent
 * (QTSM_SOCKET pointed elsewhere), and prints what the host checks: the
 * PCRs, and each attestation document with its nonce, which the host
 * verifies against the PCRs that qtenclave build printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsm.h"
#include "qtsm_lib.h"

static int failures;

static void fail(const char *what, int rc)
{
	printf("clib-demo: FAIL %s: %d\n", what, rc);
	failures++;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void base64(char *out, const uint8_t *b, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = 0;
}

static uint8_t doc[32768];
static char text[2 * sizeof doc];

/* attest gets a document for a fresh nonce through libnsm on handle h and
 * prints it under label. */
static void attest(int q, int n, const char *label)
{
	uint8_t nonce[16];
	int rc = qtsm_get_random(q, nonce, sizeof nonce);
	if (rc != NO_ERROR) {
		fail("qtsm_get_random", rc);
		return;
	}
	uint32_t len = sizeof doc;
	ErrorCode ec = nsm_get_attestation_doc(n, NULL, 0, nonce, sizeof nonce, NULL, 0, doc, &len);
	if (ec != ERROR_CODE_SUCCESS) {
		fail("nsm_get_attestation_doc", ec);
		return;
	}
	char nh[2 * sizeof nonce + 1];
	hex(nh, nonce, sizeof nonce);
	base64(text, doc, len);
	printf("clib-demo: %s attestation nonce=%s document=%s\n", label, nh, text);
}

int main(void)
{
	/* Through the agent. */
	int q = qtsm_lib_init(), n = nsm_lib_init();
	if (q <= 0 || n <= 0) {
		printf("clib-demo: FAIL init: %d %d\n", q, n);
		return 1;
	}
	describe_qtsm d;
	int rc = qtsm_get_describe(q, &d);
	if (rc != NO_ERROR)
		fail("qtsm_get_describe", rc);
	else
		printf("clib-demo: module_id=%s max_pcrs=%u digest=%d locked=%u\n", d.module_id, d.max_pcrs, d.digest,
			d.locked_pcrs_num);
	uint8_t agent_pcr0[48];
	for (uint16_t i = 0; i < 3; i++) {
		uint8_t v[64];
		uint32_t len = sizeof v;
		bool locked;
		rc = qtsm_describe_pcr(q, i, &locked, v, &len);
		if (rc != NO_ERROR || len != 48) {
			fail("qtsm_describe_pcr", rc);
			continue;
		}
		if (i == 0)
			memcpy(agent_pcr0, v, 48);
		char h[97];
		hex(h, v, 48);
		printf("clib-demo: PCR%u=%s\n", i, h);
	}
	uint8_t v[48];
	uint32_t len = sizeof v;
	rc = qtsm_extend_pcr(q, 16, (const uint8_t *)"clib-demo", 9, v, &len);
	bool locked = false;
	if (rc == NO_ERROR)
		rc = qtsm_lock_pcr(q, 16, &locked);
	len = sizeof v;
	ErrorCode ec = nsm_extend_pcr(n, 16, (const uint8_t *)"again", 5, v, &len);
	if (rc == NO_ERROR && locked && ec == ERROR_CODE_READ_ONLY_INDEX)
		printf("clib-demo: pcr16 extended, locked, extend after lock refused ok\n");
	else
		fail("pcr16 extend/lock", rc ? rc : (int)ec);
	attest(q, n, "agent");
	qtsm_lib_exit(q);
	nsm_lib_exit(n);

	/* Without the agent: the device itself. */
	setenv("QTSM_SOCKET", "/run/no-agent-here.sock", 1);
	q = qtsm_lib_init();
	n = nsm_lib_init();
	if (q <= 0 || n <= 0) {
		printf("clib-demo: FAIL device init: %d %d\n", q, n);
		return 1;
	}
	len = sizeof v;
	ec = nsm_describe_pcr(n, 0, &locked, v, &len);
	if (ec == ERROR_CODE_SUCCESS && len == 48 && memcmp(v, agent_pcr0, 48) == 0)
		printf("clib-demo: device PCR0 matches the agent's\n");
	else
		fail("nsm_describe_pcr on the device", ec);
	attest(q, n, "device");
	qtsm_lib_exit(q);
	nsm_lib_exit(n);

	printf("clib-demo: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
