/*
 * The core both libraries share: a handle table, one exchange with the
 * secure module (through qtsm-agent's POST /v1/raw, or the device's raw
 * ioctl when no agent socket exists), a small strict CBOR reader and
 * writer, and the module operations. Nothing here is exported: the
 * libraries are built with -fvisibility=hidden and only the ABI functions
 * (QTE_API) are visible.
 */
#ifndef QTE_INTERNAL_H
#define QTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QTE_API __attribute__((visibility("default")))

/* Statuses of the core, by the module's error names; each ABI maps them
 * to its own numbers. */
enum qte_status {
	QTE_OK = 0,
	QTE_INVALID_ARGUMENT,
	QTE_INVALID_INDEX,
	QTE_INVALID_RESPONSE,
	QTE_READ_ONLY_INDEX,
	QTE_INVALID_OPERATION,
	QTE_BUFFER_TOO_SMALL,
	QTE_INPUT_TOO_LARGE,
	QTE_INTERNAL_ERROR,
	QTE_INVALID_CERT,
};

/* Both devices take requests up to 4 KiB. */
#define QTE_MAX_REQUEST 0x1000
/* The largest answer read: Qingtian's driver limit. */
#define QTE_MAX_RESPONSE 0x8000

/* Handles. qte_open returns a new handle (a file descriptor > 0 that the
 * table knows) or a negative errno value; devices is the device paths to
 * try, in order, when no agent socket exists. */
int qte_open(const char *const *devices);
void qte_close(int handle);

/* One handle's way to the module, copied out of the table for one call. */
struct qte_route {
	int kind;             /* QTE_AGENT or QTE_DEVICE */
	char path[108];       /* the agent's socket or the device */
	size_t device_answer; /* the answer buffer the device's driver wants */
};
enum { QTE_AGENT = 1, QTE_DEVICE = 2 };
bool qte_lookup(int handle, struct qte_route *route);

/* One exchange: req in, the module's CBOR answer in resp (capacity
 * QTE_MAX_RESPONSE), its length in *resp_len. */
enum qte_status qte_exchange(const struct qte_route *route, const uint8_t *req,
	size_t req_len, uint8_t *resp, size_t *resp_len);

/* CBOR writer into a fixed buffer; overflow is remembered. */
struct qte_w {
	uint8_t *p;
	size_t len, cap;
	bool overflow;
};
void qte_w_head(struct qte_w *w, unsigned major, uint64_t v);
void qte_w_text(struct qte_w *w, const char *s);
/* A byte string, or null when b is NULL. */
void qte_w_bytes(struct qte_w *w, const uint8_t *b, size_t n);

/* CBOR reader: definite lengths only, bounds checked, nesting bounded. */
struct qte_r {
	const uint8_t *p;
	size_t len, off;
};
enum { QTE_UINT = 0, QTE_BYTES = 2, QTE_TEXT = 3, QTE_ARRAY = 4, QTE_MAP = 5, QTE_SIMPLE = 7 };
bool qte_r_head(struct qte_r *r, unsigned *major, uint64_t *v);
/* A byte or text string: its bytes stay in the input. */
bool qte_r_string(struct qte_r *r, unsigned major, const uint8_t **s, size_t *n);
bool qte_r_uint(struct qte_r *r, uint64_t max, uint64_t *v);
bool qte_r_bool(struct qte_r *r, bool *v);
bool qte_r_skip(struct qte_r *r);
bool qte_text_is(const uint8_t *s, size_t n, const char *want);

/* Answers: qte_answer checks that buf[0..n) is want's answer and leaves
 * its body in *body, or returns the module's error; the readers take the
 * fields out of a body. Separate from the exchange so that they can be
 * fuzzed (test/fuzz_answers.c). */
enum qte_status qte_answer(const uint8_t *buf, size_t n, const char *want, struct qte_r *body);
/* A map body whose field key is a byte string (and "lock" a bool, when lock
 * is not NULL); *b points into the body. */
enum qte_status qte_read_bytes(struct qte_r *body, const char *key, bool *lock, const uint8_t **b, size_t *n);
struct qte_description;
enum qte_status qte_read_describe(struct qte_r *body, struct qte_description *d);

/* The operations, in the core's terms. Output lengths are capacity in,
 * length out; too small gives QTE_BUFFER_TOO_SMALL, the needed length and
 * nothing copied. */
struct qte_description {
	uint16_t major, minor, patch, max_pcrs;
	char module_id[256];
	size_t module_id_len; /* the whole id's length; module_id holds at most 255 bytes of it */
	uint16_t locked[64];
	size_t nlocked;
	int digest; /* 0 SHA256, 1 SHA384, 2 SHA512 */
};
enum qte_status qte_describe(int h, struct qte_description *d);
enum qte_status qte_describe_pcr(int h, uint16_t index, bool *lock, uint8_t *data, uint32_t *len);
enum qte_status qte_extend_pcr(int h, uint16_t index, const uint8_t *data, uint32_t data_len,
	uint8_t *out, uint32_t *out_len);
enum qte_status qte_lock_pcr(int h, uint16_t index);
enum qte_status qte_lock_pcrs(int h, uint16_t range);
enum qte_status qte_attestation(int h, const uint8_t *user_data, uint32_t user_data_len,
	const uint8_t *nonce, uint32_t nonce_len, const uint8_t *public_key, uint32_t public_key_len,
	uint8_t *doc, uint32_t *doc_len);
/* One GetRandom answer, at most cap bytes of it into out; *n is set. */
enum qte_status qte_random(int h, uint8_t *out, size_t cap, size_t *n);

#endif
