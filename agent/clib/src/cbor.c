/*
 * The CBOR the secure module speaks (docs/protocol.md §2): a writer for
 * the seven requests and a strict reader for their answers. Hand-written
 * because the libraries depend on libc only; it reads definite lengths
 * only (neither device nor agent sends others) and checks every length
 * against the input before using it.
 */
#include <string.h>

#include "internal.h"

static void put(struct qte_w *w, const void *b, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->len, b, n);
	w->len += n;
}

void qte_w_head(struct qte_w *w, unsigned major, uint64_t v)
{
	uint8_t b[9];
	size_t n;
	b[0] = (uint8_t)(major << 5);
	if (v < 24) {
		b[0] |= (uint8_t)v;
		n = 1;
	} else if (v <= 0xff) {
		b[0] |= 24;
		b[1] = (uint8_t)v;
		n = 2;
	} else if (v <= 0xffff) {
		b[0] |= 25;
		b[1] = (uint8_t)(v >> 8);
		b[2] = (uint8_t)v;
		n = 3;
	} else if (v <= 0xffffffff) {
		b[0] |= 26;
		for (int i = 0; i < 4; i++)
			b[1 + i] = (uint8_t)(v >> (24 - 8 * i));
		n = 5;
	} else {
		b[0] |= 27;
		for (int i = 0; i < 8; i++)
			b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
		n = 9;
	}
	put(w, b, n);
}

void qte_w_text(struct qte_w *w, const char *s)
{
	size_t n = strlen(s);
	qte_w_head(w, QTE_TEXT, n);
	put(w, s, n);
}

void qte_w_bytes(struct qte_w *w, const uint8_t *b, size_t n)
{
	if (b == NULL) {
		uint8_t null = 0xf6;
		put(w, &null, 1);
		return;
	}
	qte_w_head(w, QTE_BYTES, n);
	put(w, b, n);
}

bool qte_r_head(struct qte_r *r, unsigned *major, uint64_t *v)
{
	if (r->off >= r->len)
		return false;
	uint8_t b = r->p[r->off++];
	unsigned info = b & 0x1f;
	*major = b >> 5;
	if (info < 24) {
		*v = info;
		return true;
	}
	if (info > 27) /* reserved, or an indefinite length */
		return false;
	size_t n = (size_t)1 << (info - 24);
	if (n > r->len - r->off)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++)
		x = x << 8 | r->p[r->off + i];
	r->off += n;
	*v = x;
	return true;
}

bool qte_r_string(struct qte_r *r, unsigned want, const uint8_t **s, size_t *n)
{
	unsigned major;
	uint64_t v;
	if (!qte_r_head(r, &major, &v) || major != want || v > r->len - r->off)
		return false;
	*s = r->p + r->off;
	*n = (size_t)v;
	r->off += (size_t)v;
	return true;
}

bool qte_r_uint(struct qte_r *r, uint64_t max, uint64_t *v)
{
	unsigned major;
	return qte_r_head(r, &major, v) && major == QTE_UINT && *v <= max;
}

bool qte_r_bool(struct qte_r *r, bool *v)
{
	unsigned major;
	uint64_t x;
	if (!qte_r_head(r, &major, &x) || major != QTE_SIMPLE || (x != 20 && x != 21))
		return false;
	*v = x == 21;
	return true;
}

/* skip passes over one item, nested at most depth deep. */
static bool skip(struct qte_r *r, int depth)
{
	unsigned major;
	uint64_t v;
	if (depth > 16 || !qte_r_head(r, &major, &v))
		return false;
	switch (major) {
	case 0:
	case 1:
	case QTE_SIMPLE:
		return true;
	case QTE_BYTES:
	case QTE_TEXT:
		if (v > r->len - r->off)
			return false;
		r->off += (size_t)v;
		return true;
	case QTE_ARRAY:
	case QTE_MAP:
		/* Every item takes a byte at least: a count over what is left
		 * is refused before it is walked. */
		if (v > r->len - r->off || (major == QTE_MAP && v > (r->len - r->off) / 2))
			return false;
		for (uint64_t i = 0; i < (major == QTE_MAP ? 2 * v : v); i++)
			if (!skip(r, depth + 1))
				return false;
		return true;
	case 6: /* a tag and its item */
		return skip(r, depth + 1);
	}
	return false;
}

bool qte_r_skip(struct qte_r *r) { return skip(r, 0); }

bool qte_text_is(const uint8_t *s, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(s, want, n) == 0;
}
