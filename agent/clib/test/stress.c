#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
/*
 * The concurrency test: THREADS threads (half through libqtsm, half through
 * libnsm, on one shared handle each) make ITERS attestations apiece with a
 * nonce of their own, and every fourth iteration a random read and a PCR0
 * read. Every document must carry its own nonce and every PCR0 read the
 * same value: an answer lost, swapped between threads or cut short shows.
 *
 *   stress THREADS ITERS       prints one summary line; exit 0 when clean
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsm.h"
#include "qtsm_lib.h"

static int qh, nh, iters;
static uint8_t pcr0[48];
static int ok, errs, corrupt, requests;

static void count(int *c) { __atomic_add_fetch(c, 1, __ATOMIC_RELAXED); }

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	bool viaq = id % 2 == 0;
	uint8_t *doc = malloc(32768);
	for (int i = 0; i < iters; i++) {
		char nonce[32];
		int nl = snprintf(nonce, sizeof nonce, "t%02d-i%05d", id, i);
		/* The nonce as the document encodes it: "nonce" then its bytes. */
		uint8_t want[64];
		memcpy(want, "\x65nonce", 6);
		want[6] = (uint8_t)(0x40 | nl);
		memcpy(want + 7, nonce, (size_t)nl);
		uint32_t len = 32768;
		int rc = viaq ? qtsm_get_attestation(qh, NULL, 0, (const uint8_t *)nonce, (uint32_t)nl, NULL, 0, doc, &len)
			      : (int)nsm_get_attestation_doc(nh, NULL, 0, (const uint8_t *)nonce, (uint32_t)nl, NULL, 0, doc, &len);
		count(&requests);
		if (rc != 0)
			count(&errs);
		else if (memmem(doc, len, want, 7 + (size_t)nl) == NULL)
			count(&corrupt);
		else
			count(&ok);
		if (i % 4 != 0)
			continue;
		uint8_t v[48];
		uint32_t vl = sizeof v;
		bool locked;
		rc = viaq ? qtsm_describe_pcr(qh, 0, &locked, v, &vl) : (int)nsm_describe_pcr(nh, 0, &locked, v, &vl);
		count(&requests);
		if (rc != 0)
			count(&errs);
		else if (vl != 48 || memcmp(v, pcr0, 48) != 0 || !locked)
			count(&corrupt);
		else
			count(&ok);
		uint8_t r[64];
		rc = qtsm_get_random(qh, r, sizeof r);
		count(&requests); /* at least one GetRandom */
		if (rc != 0)
			count(&errs);
		else
			count(&ok);
	}
	free(doc);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: stress THREADS ITERS\n");
		return 2;
	}
	int threads = atoi(argv[1]);
	iters = atoi(argv[2]);
	if (threads < 1 || threads > 256 || iters < 1) {
		fprintf(stderr, "stress: bad THREADS or ITERS\n");
		return 2;
	}
	qh = qtsm_lib_init();
	nh = nsm_lib_init();
	uint32_t len = sizeof pcr0;
	bool locked;
	if (qh <= 0 || nh <= 0 || qtsm_describe_pcr(qh, 0, &locked, pcr0, &len) != NO_ERROR) {
		fprintf(stderr, "stress: no module (%d %d)\n", qh, nh);
		return 1;
	}
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
			fprintf(stderr, "stress: pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	free(t);
	qtsm_lib_exit(qh);
	nsm_lib_exit(nh);
	printf("stress: threads=%d requests=%d ok=%d errors=%d corrupted=%d\n", threads, requests, ok, errs, corrupt);
	return errs == 0 && corrupt == 0 && ok == requests ? 0 : 1;
}
