/*
 * The secure module's operations (docs/protocol.md §2): each encodes its
 * request, makes one exchange, and checks that the answer is its own
 * variant or the module's Error before reading the fields it needs.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An answer buffer and the variant's body within it. */
struct answer {
	uint8_t *buf;
	struct qte_r body; /* empty for a unit variant */
};

static const struct {
	const char *name;
	enum qte_status status;
} errors[] = {
	{"InvalidArgument", QTE_INVALID_ARGUMENT},
	{"InvalidIndex", QTE_INVALID_INDEX},
	{"InvalidResponse", QTE_INVALID_RESPONSE},
	{"ReadOnlyIndex", QTE_READ_ONLY_INDEX},
	{"InvalidOperation", QTE_INVALID_OPERATION},
	{"BufferTooSmall", QTE_BUFFER_TOO_SMALL},
	{"InputTooLarge", QTE_INPUT_TOO_LARGE},
	{"InternalError", QTE_INTERNAL_ERROR},
	{"InvalidQtsmCert", QTE_INVALID_CERT},
};

/* is_variant: name is want, or one of the names DescribeNSM goes by. */
static bool is_variant(const uint8_t *name, size_t n, const char *want)
{
	if (qte_text_is(name, n, want))
		return true;
	return strcmp(want, "DescribeNSM") == 0 && (qte_text_is(name, n, "Describe") || qte_text_is(name, n, "DescribeQTSM"));
}

/* qte_answer reads an answer: want's body in *body (empty for a unit
 * variant), or the module's error. */
enum qte_status qte_answer(const uint8_t *buf, size_t n, const char *want, struct qte_r *body)
{
	struct qte_r r = {buf, n, 0};
	unsigned major;
	uint64_t v;
	const uint8_t *name;
	size_t name_len;
	if (!qte_r_head(&r, &major, &v))
		return QTE_INVALID_RESPONSE;
	if (major == QTE_TEXT) { /* a unit variant */
		r.off = 0;
		if (!qte_r_string(&r, QTE_TEXT, &name, &name_len) || r.off != r.len || !is_variant(name, name_len, want))
			return QTE_INVALID_RESPONSE;
		*body = (struct qte_r){buf, 0, 0};
		return QTE_OK;
	}
	if (major != QTE_MAP || v != 1 || !qte_r_string(&r, QTE_TEXT, &name, &name_len))
		return QTE_INVALID_RESPONSE;
	size_t start = r.off;
	if (!qte_r_skip(&r) || r.off != r.len)
		return QTE_INVALID_RESPONSE;
	struct qte_r b = {buf + start, r.len - start, 0};
	if (qte_text_is(name, name_len, "Error")) {
		const uint8_t *e;
		size_t e_len;
		if (!qte_r_string(&b, QTE_TEXT, &e, &e_len) || b.off != b.len)
			return QTE_INVALID_RESPONSE;
		for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
			if (qte_text_is(e, e_len, errors[i].name))
				return errors[i].status;
		return QTE_INTERNAL_ERROR; /* an error this library does not know */
	}
	if (!is_variant(name, name_len, want))
		return QTE_INVALID_RESPONSE;
	*body = b;
	return QTE_OK;
}

/* call sends the request in w and reads the answer: want's body in a, or
 * the module's error. The caller frees a->buf. */
static enum qte_status call(int h, const struct qte_w *w, const char *want, struct answer *a)
{
	struct qte_route route;
	a->buf = NULL;
	if (!qte_lookup(h, &route))
		return QTE_INVALID_ARGUMENT;
	if (w->overflow)
		return QTE_INPUT_TOO_LARGE;
	a->buf = malloc(QTE_MAX_RESPONSE);
	if (a->buf == NULL)
		return QTE_INTERNAL_ERROR;
	size_t n = 0;
	enum qte_status st = qte_exchange(&route, w->p, w->len, a->buf, &n);
	if (st != QTE_OK)
		return st;
	return qte_answer(a->buf, n, want, &a->body);
}

/* fields walks a map body: for each key, fn reads its value or returns
 * false; a key fn does not know is skipped. seen gets a bit per known key
 * (fn's return), so that missing and repeated keys are refused. */
typedef int (*field_fn)(void *ctx, const uint8_t *key, size_t n, struct qte_r *r);
static bool fields(struct qte_r *r, void *ctx, field_fn fn, unsigned want)
{
	unsigned major, seen = 0;
	uint64_t count;
	if (!qte_r_head(r, &major, &count) || major != QTE_MAP || count > 64)
		return false;
	for (uint64_t i = 0; i < count; i++) {
		const uint8_t *key;
		size_t n;
		if (!qte_r_string(r, QTE_TEXT, &key, &n))
			return false;
		int bit = fn(ctx, key, n, r);
		if (bit < 0)
			return false;
		if (bit == 0 && !qte_r_skip(r))
			return false;
		if (bit > 0) {
			if (seen & (unsigned)bit)
				return false;
			seen |= (unsigned)bit;
		}
	}
	return (seen & want) == want;
}

/* out copies n bytes to dst within *cap, or says how many are needed. */
static enum qte_status out(const uint8_t *src, size_t n, uint8_t *dst, uint32_t *cap)
{
	if (n > UINT32_MAX)
		return QTE_INVALID_RESPONSE;
	if (dst == NULL || *cap < n) {
		*cap = (uint32_t)n;
		return QTE_BUFFER_TOO_SMALL;
	}
	memcpy(dst, src, n);
	*cap = (uint32_t)n;
	return QTE_OK;
}

/* A body whose one wanted field is a byte string (data, document,
 * random). */
struct bytes_field {
	const char *key;
	bool *lock; /* DescribePCR's "lock", when wanted */
	const uint8_t *b;
	size_t n;
};

static int bytes_field(void *ctx, const uint8_t *key, size_t n, struct qte_r *r)
{
	struct bytes_field *f = ctx;
	if (qte_text_is(key, n, f->key))
		return qte_r_string(r, QTE_BYTES, &f->b, &f->n) ? 1 : -1;
	if (f->lock != NULL && qte_text_is(key, n, "lock"))
		return qte_r_bool(r, f->lock) ? 2 : -1;
	return 0;
}

enum qte_status qte_read_bytes(struct qte_r *body, const char *key, bool *lock, const uint8_t **b, size_t *n)
{
	struct bytes_field f = {.key = key, .lock = lock};
	if (!fields(body, &f, bytes_field, lock ? 3u : 1u))
		return QTE_INVALID_RESPONSE;
	*b = f.b;
	*n = f.n;
	return QTE_OK;
}

static enum qte_status bytes_answer(int h, const struct qte_w *w, const char *variant, const char *key, bool *lock,
	uint8_t *dst, uint32_t *cap)
{
	struct answer a;
	const uint8_t *b;
	size_t n;
	enum qte_status st = call(h, w, variant, &a);
	if (st == QTE_OK)
		st = qte_read_bytes(&a.body, key, lock, &b, &n);
	if (st == QTE_OK)
		st = out(b, n, dst, cap);
	free(a.buf);
	return st;
}

#define REQUEST(name)                                                                                        \
	uint8_t name##_buf[QTE_MAX_REQUEST];                                                                   \
	struct qte_w name = {name##_buf, 0, sizeof name##_buf, false}

/* {"Op": {"index": i}} */
static void index_request(struct qte_w *w, const char *op, const char *key, uint16_t i)
{
	qte_w_head(w, QTE_MAP, 1);
	qte_w_text(w, op);
	qte_w_head(w, QTE_MAP, 1);
	qte_w_text(w, key);
	qte_w_head(w, QTE_UINT, i);
}

enum qte_status qte_describe_pcr(int h, uint16_t index, bool *lock, uint8_t *data, uint32_t *len)
{
	REQUEST(w);
	index_request(&w, "DescribePCR", "index", index);
	bool l = false;
	enum qte_status st = bytes_answer(h, &w, "DescribePCR", "data", &l, data, len);
	if (st == QTE_OK || st == QTE_BUFFER_TOO_SMALL)
		*lock = l;
	return st;
}

enum qte_status qte_extend_pcr(int h, uint16_t index, const uint8_t *data, uint32_t data_len, uint8_t *dst,
	uint32_t *cap)
{
	REQUEST(w);
	qte_w_head(&w, QTE_MAP, 1);
	qte_w_text(&w, "ExtendPCR");
	qte_w_head(&w, QTE_MAP, 2);
	qte_w_text(&w, "index");
	qte_w_head(&w, QTE_UINT, index);
	qte_w_text(&w, "data");
	qte_w_bytes(&w, data, data_len);
	return bytes_answer(h, &w, "ExtendPCR", "data", NULL, dst, cap);
}

static enum qte_status unit_answer(int h, const struct qte_w *w, const char *variant)
{
	struct answer a;
	enum qte_status st = call(h, w, variant, &a);
	if (st == QTE_OK && a.body.len != 0)
		st = QTE_INVALID_RESPONSE; /* the unit variant has no body */
	free(a.buf);
	return st;
}

enum qte_status qte_lock_pcr(int h, uint16_t index)
{
	REQUEST(w);
	index_request(&w, "LockPCR", "index", index);
	return unit_answer(h, &w, "LockPCR");
}

enum qte_status qte_lock_pcrs(int h, uint16_t range)
{
	REQUEST(w);
	index_request(&w, "LockPCRs", "range", range);
	return unit_answer(h, &w, "LockPCRs");
}

enum qte_status qte_attestation(int h, const uint8_t *user_data, uint32_t user_data_len, const uint8_t *nonce,
	uint32_t nonce_len, const uint8_t *public_key, uint32_t public_key_len, uint8_t *doc, uint32_t *doc_len)
{
	REQUEST(w);
	qte_w_head(&w, QTE_MAP, 1);
	qte_w_text(&w, "Attestation");
	qte_w_head(&w, QTE_MAP, 3);
	qte_w_text(&w, "user_data");
	qte_w_bytes(&w, user_data, user_data_len);
	qte_w_text(&w, "nonce");
	qte_w_bytes(&w, nonce, nonce_len);
	qte_w_text(&w, "public_key");
	qte_w_bytes(&w, public_key, public_key_len);
	return bytes_answer(h, &w, "Attestation", "document", NULL, doc, doc_len);
}

enum qte_status qte_random(int h, uint8_t *dst, size_t cap, size_t *n)
{
	REQUEST(w);
	qte_w_text(&w, "GetRandom");
	struct answer a;
	const uint8_t *b;
	size_t got = 0;
	enum qte_status st = call(h, &w, "GetRandom", &a);
	if (st == QTE_OK)
		st = qte_read_bytes(&a.body, "random", NULL, &b, &got);
	if (st == QTE_OK && got == 0)
		st = QTE_INVALID_RESPONSE; /* no progress: refused rather than looped on */
	if (st == QTE_OK) {
		*n = got < cap ? got : cap;
		memcpy(dst, b, *n);
	}
	free(a.buf);
	return st;
}

static int describe_field(void *ctx, const uint8_t *key, size_t n, struct qte_r *r)
{
	struct qte_description *d = ctx;
	uint64_t v;
	if (qte_text_is(key, n, "version_major"))
		return qte_r_uint(r, UINT16_MAX, &v) ? (d->major = (uint16_t)v, 1) : -1;
	if (qte_text_is(key, n, "version_minor"))
		return qte_r_uint(r, UINT16_MAX, &v) ? (d->minor = (uint16_t)v, 2) : -1;
	if (qte_text_is(key, n, "version_patch"))
		return qte_r_uint(r, UINT16_MAX, &v) ? (d->patch = (uint16_t)v, 4) : -1;
	if (qte_text_is(key, n, "max_pcrs"))
		return qte_r_uint(r, UINT16_MAX, &v) ? (d->max_pcrs = (uint16_t)v, 8) : -1;
	if (qte_text_is(key, n, "module_id")) {
		const uint8_t *s;
		size_t len;
		if (!qte_r_string(r, QTE_TEXT, &s, &len))
			return -1;
		size_t keep = len < sizeof d->module_id - 1 ? len : sizeof d->module_id - 1;
		memcpy(d->module_id, s, keep);
		d->module_id[keep] = 0;
		d->module_id_len = len;
		return 16;
	}
	if (qte_text_is(key, n, "digest")) {
		static const char *const names[] = {"SHA256", "SHA384", "SHA512"};
		const uint8_t *s;
		size_t len;
		if (!qte_r_string(r, QTE_TEXT, &s, &len))
			return -1;
		for (int i = 0; i < 3; i++)
			if (qte_text_is(s, len, names[i]))
				return d->digest = i, 32;
		return -1;
	}
	if (qte_text_is(key, n, "locked_pcrs")) {
		unsigned major;
		uint64_t count;
		if (!qte_r_head(r, &major, &count) || major != QTE_ARRAY || count > sizeof d->locked / sizeof d->locked[0])
			return -1;
		for (uint64_t i = 0; i < count; i++) {
			if (!qte_r_uint(r, UINT16_MAX, &v))
				return -1;
			d->locked[i] = (uint16_t)v;
		}
		d->nlocked = (size_t)count;
		return 64;
	}
	return 0;
}

enum qte_status qte_read_describe(struct qte_r *body, struct qte_description *d)
{
	memset(d, 0, sizeof *d);
	return fields(body, d, describe_field, 127) ? QTE_OK : QTE_INVALID_RESPONSE;
}

enum qte_status qte_describe(int h, struct qte_description *d)
{
	REQUEST(w);
	qte_w_text(&w, "DescribeNSM");
	struct answer a;
	enum qte_status st = call(h, &w, "DescribeNSM", &a);
	if (st == QTE_OK)
		st = qte_read_describe(&a.body, d);
	free(a.buf);
	return st;
}
