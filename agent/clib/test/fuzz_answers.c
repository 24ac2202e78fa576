/*
 * A mutation fuzzer for the answer parser (src/module.c: qte_answer and the
 * field readers), built with AddressSanitizer and UBSan: it mutates valid
 * answers of every variant (byte flips, CBOR's special head bytes, cuts,
 * repeats, insertions), parses each mutant as every variant, and checks
 * that nothing is read outside the input and every result stays in bounds.
 * gcc has no libFuzzer: this is random mutation, not coverage-guided.
 *
 *   fuzz_answers SECONDS [SEED]    prints the count; exit 0 when clean
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define MAX 8192

struct seed {
	uint8_t b[MAX];
	size_t n;
};

static struct seed seeds[16];
static int nseeds;

static struct qte_w start(void)
{
	struct seed *s = &seeds[nseeds++];
	return (struct qte_w){s->b, 0, sizeof s->b, false};
}

static void done(struct qte_w *w) { seeds[nseeds - 1].n = w->len; }

static void make_seeds(void)
{
	static uint8_t data[300];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)(i * 7);
	const char *units[] = {"LockPCR", "LockPCRs"};
	for (int i = 0; i < 2; i++) {
		struct qte_w w = start();
		qte_w_text(&w, units[i]);
		done(&w);
	}
	struct {
		const char *variant, *key;
		size_t n;
		bool lock;
	} bodies[] = {{"DescribePCR", "data", 48, true}, {"ExtendPCR", "data", 48, false},
		{"Attestation", "document", 300, false}, {"GetRandom", "random", 256, false}};
	for (int i = 0; i < 4; i++) {
		struct qte_w w = start();
		qte_w_head(&w, QTE_MAP, 1);
		qte_w_text(&w, bodies[i].variant);
		qte_w_head(&w, QTE_MAP, bodies[i].lock ? 2 : 1);
		if (bodies[i].lock) {
			qte_w_text(&w, "lock");
			qte_w_head(&w, QTE_SIMPLE, 21);
		}
		qte_w_text(&w, bodies[i].key);
		qte_w_bytes(&w, data, bodies[i].n);
		done(&w);
	}
	struct qte_w w = start();
	qte_w_head(&w, QTE_MAP, 1);
	qte_w_text(&w, "DescribeNSM");
	qte_w_head(&w, QTE_MAP, 7);
	qte_w_text(&w, "version_major");
	qte_w_head(&w, QTE_UINT, 1);
	qte_w_text(&w, "version_minor");
	qte_w_head(&w, QTE_UINT, 0);
	qte_w_text(&w, "version_patch");
	qte_w_head(&w, QTE_UINT, 0);
	qte_w_text(&w, "module_id");
	qte_w_text(&w, "i-0123456789abcdef0-enc0123456789abcdef");
	qte_w_text(&w, "max_pcrs");
	qte_w_head(&w, QTE_UINT, 32);
	qte_w_text(&w, "locked_pcrs");
	qte_w_head(&w, QTE_ARRAY, 16);
	for (unsigned i = 0; i < 16; i++)
		qte_w_head(&w, QTE_UINT, i);
	qte_w_text(&w, "digest");
	qte_w_text(&w, "SHA384");
	done(&w);
	w = start();
	qte_w_head(&w, QTE_MAP, 1);
	qte_w_text(&w, "Error");
	qte_w_text(&w, "InvalidIndex");
	done(&w);
}

static uint64_t rng;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static size_t mutate(uint8_t *b, size_t n)
{
	static const uint8_t special[] = {0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x5f, 0x7f, 0x9f, 0xbf,
		0xa1, 0x40, 0x60, 0x80, 0xf4, 0xf5, 0xf6, 0xf7, 0xff, 0xfb};
	int k = 1 + (int)(rnd() % 6);
	for (int i = 0; i < k && n > 0; i++) {
		size_t at = rnd() % n;
		switch (rnd() % 6) {
		case 0:
			b[at] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1:
			b[at] = special[rnd() % sizeof special];
			break;
		case 2:
			n = at; /* cut */
			break;
		case 3: { /* repeat a chunk */
			size_t len = 1 + rnd() % 16;
			if (at + len <= n && n + len <= MAX) {
				memmove(b + at + len, b + at, n - at);
				n += len;
			}
			break;
		}
		case 4: { /* insert random bytes */
			size_t len = 1 + rnd() % 4;
			if (n + len <= MAX) {
				memmove(b + at + len, b + at, n - at);
				for (size_t j = 0; j < len; j++)
					b[at + j] = (uint8_t)rnd();
				n += len;
			}
			break;
		}
		default:
			b[at] = (uint8_t)rnd();
		}
	}
	return n;
}

static bool within(const uint8_t *p, size_t len, const uint8_t *buf, size_t n)
{
	return p >= buf && len <= n && (size_t)(p - buf) <= n - len;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fuzz_answers SECONDS [SEED]\n");
		return 2;
	}
	double seconds = atof(argv[1]);
	rng = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)time(NULL);
	if (rng == 0)
		rng = 1;
	make_seeds();
	static const char *wants[] = {"LockPCR", "LockPCRs", "DescribePCR", "ExtendPCR", "Attestation", "GetRandom", "DescribeNSM"};
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned long runs = 0, accepted = 0;
	static uint8_t work[MAX];
	for (;;) {
		if (runs % 1024 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
				break;
		}
		struct seed *s = &seeds[rnd() % (unsigned)nseeds];
		memcpy(work, s->b, s->n);
		size_t n = mutate(work, s->n);
		/* Exactly n bytes on the heap: one byte over is an ASan report. */
		uint8_t *buf = malloc(n ? n : 1);
		memcpy(buf, work, n);
		for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) {
			struct qte_r body;
			if (qte_answer(buf, n, wants[i], &body) != QTE_OK)
				continue;
			if (!within(body.p, body.len, buf, n) && body.len != 0) {
				fprintf(stderr, "fuzz_answers: body outside the input\n");
				return 1;
			}
			const uint8_t *b;
			size_t bn;
			bool lock;
			struct qte_description d;
			if (i == 6) {
				if (qte_read_describe(&body, &d) == QTE_OK) {
					accepted++;
					if (d.nlocked > 64 || strlen(d.module_id) > 255) {
						fprintf(stderr, "fuzz_answers: description out of bounds\n");
						return 1;
					}
				}
			} else if (i >= 2) {
				const char *key = i == 4 ? "document" : i == 5 ? "random" : "data";
				if (qte_read_bytes(&body, key, i == 2 ? &lock : NULL, &b, &bn) == QTE_OK) {
					accepted++;
					if (!within(b, bn, buf, n)) {
						fprintf(stderr, "fuzz_answers: field outside the input\n");
						return 1;
					}
				}
			} else {
				accepted++;
			}
		}
		free(buf);
		runs++;
	}
	printf("fuzz_answers: %lu inputs in %.0f s, %lu parsed as a variant, seed %s\n", runs, seconds, accepted,
		argc > 2 ? argv[2] : "time");
	return 0;
}
