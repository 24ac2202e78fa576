/*
 * Huawei's libqtsm interface (include/qtsm_lib.h) over the shared core.
 */
#include <string.h>

#include "internal.h"
#include "qtsm_lib.h"

static int code(enum qte_status s)
{
	switch (s) {
	case QTE_OK:
		return NO_ERROR;
	case QTE_INVALID_ARGUMENT:
		return INVALID_ARGUMENT;
	case QTE_INVALID_INDEX:
		return INVALID_INDEX;
	case QTE_INVALID_RESPONSE:
		return INVALID_RESPONSE;
	case QTE_READ_ONLY_INDEX:
		return READ_ONLY_INDEX;
	case QTE_INVALID_OPERATION:
		return INVALID_OPERATION;
	case QTE_BUFFER_TOO_SMALL:
		return BUFFER_TOO_SMALL;
	case QTE_INPUT_TOO_LARGE:
		return INPUT_TOO_LARGE;
	case QTE_INVALID_CERT:
		return INVALID_QTSM_CERT;
	case QTE_INTERNAL_ERROR:
		break;
	}
	return INTERNAL_ERROR;
}

static const char *const devices[] = {"/dev/qtsm", "/dev/nsm", NULL};

QTE_API int qtsm_lib_init(void) { return qte_open(devices); }

QTE_API void qtsm_lib_exit(int qtsm_dev_fd) { qte_close(qtsm_dev_fd); }

QTE_API int qtsm_describe_pcr(const int fd, const uint16_t index, bool *locked, uint8_t *data, uint32_t *data_len)
{
	if (locked == NULL || data_len == NULL)
		return INVALID_ARGUMENT;
	return code(qte_describe_pcr(fd, index, locked, data, data_len));
}

QTE_API int qtsm_extend_pcr(const int fd, const uint16_t index, const uint8_t *req_data, const uint32_t req_data_len,
	uint8_t *pcr_data, uint32_t *pcr_data_len)
{
	if (req_data == NULL || pcr_data_len == NULL)
		return INVALID_ARGUMENT;
	return code(qte_extend_pcr(fd, index, req_data, req_data_len, pcr_data, pcr_data_len));
}

QTE_API int qtsm_lock_pcr(const int fd, const uint16_t index, bool *locked)
{
	if (locked == NULL)
		return INVALID_ARGUMENT;
	enum qte_status st = qte_lock_pcr(fd, index);
	*locked = st == QTE_OK;
	return code(st);
}

/* qtsm_lock_pcrs locks each PCR of range[0..count) in turn (LockPCR), and
 * stops at the first refusal: *locked is true when all are locked. */
QTE_API int qtsm_lock_pcrs(const int fd, const uint32_t count, const uint16_t *range, bool *locked)
{
	if (locked == NULL || range == NULL || count == 0)
		return INVALID_ARGUMENT;
	*locked = false;
	if (count > QTSM_MAX_PCR_COUNT)
		return INVALID_INDEX;
	for (uint32_t i = 0; i < count; i++) {
		enum qte_status st = qte_lock_pcr(fd, range[i]);
		if (st != QTE_OK)
			return code(st);
	}
	*locked = true;
	return NO_ERROR;
}

QTE_API int qtsm_get_describe(const int fd, describe_qtsm *qtsm_description)
{
	if (qtsm_description == NULL)
		return INVALID_ARGUMENT;
	struct qte_description d;
	enum qte_status st = qte_describe(fd, &d);
	if (st != QTE_OK)
		return code(st);
	if (d.nlocked > QTSM_MAX_PCR_COUNT)
		return INVALID_RESPONSE;
	describe_qtsm *q = qtsm_description;
	memset(q, 0, sizeof *q);
	q->version_major = d.major;
	q->version_minor = d.minor;
	q->version_patch = d.patch;
	size_t n = d.module_id_len < sizeof q->module_id - 1 ? d.module_id_len : sizeof q->module_id - 1;
	memcpy(q->module_id, d.module_id, n);
	q->module_id_len = (uint32_t)n;
	q->max_pcrs = d.max_pcrs;
	q->locked_pcrs_num = (uint32_t)d.nlocked;
	memcpy(q->locked_pcrs, d.locked, d.nlocked * sizeof d.locked[0]);
	q->digest = (enum digest_alg)d.digest;
	return NO_ERROR;
}

QTE_API int qtsm_get_attestation(const int fd, const uint8_t *user_data, const uint32_t user_data_len,
	const uint8_t *nonce_data, const uint32_t nonce_data_len, const uint8_t *pubkey_data, const uint32_t pubkey_len,
	uint8_t *att_doc_data, uint32_t *att_doc_data_len)
{
	if (att_doc_data_len == NULL)
		return INVALID_ARGUMENT;
	return code(qte_attestation(fd, user_data, user_data_len, nonce_data, nonce_data_len, pubkey_data, pubkey_len,
		att_doc_data, att_doc_data_len));
}

/* qtsm_get_random fills the whole buffer, with as many GetRandom calls as
 * it takes. */
QTE_API int qtsm_get_random(const int fd, uint8_t *rnd_data, const uint32_t rnd_data_len)
{
	if (rnd_data == NULL || rnd_data_len == 0)
		return INVALID_ARGUMENT;
	for (uint32_t done = 0; done < rnd_data_len;) {
		size_t n = 0;
		enum qte_status st = qte_random(fd, rnd_data + done, rnd_data_len - done, &n);
		if (st != QTE_OK)
			return code(st);
		done += (uint32_t)n;
	}
	return NO_ERROR;
}
