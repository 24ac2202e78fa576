/*
 * AWS's nsm-lib interface (include/nsm.h) over the shared core.
 */
#include <string.h>

#include "internal.h"
#include "nsm.h"

static ErrorCode code(enum qte_status s)
{
	switch (s) {
	case QTE_OK:
		return ERROR_CODE_SUCCESS;
	case QTE_INVALID_ARGUMENT:
		return ERROR_CODE_INVALID_ARGUMENT;
	case QTE_INVALID_INDEX:
		return ERROR_CODE_INVALID_INDEX;
	case QTE_INVALID_RESPONSE:
		return ERROR_CODE_INVALID_RESPONSE;
	case QTE_READ_ONLY_INDEX:
		return ERROR_CODE_READ_ONLY_INDEX;
	case QTE_INVALID_OPERATION:
		return ERROR_CODE_INVALID_OPERATION;
	case QTE_BUFFER_TOO_SMALL:
		return ERROR_CODE_BUFFER_TOO_SMALL;
	case QTE_INPUT_TOO_LARGE:
		return ERROR_CODE_INPUT_TOO_LARGE;
	case QTE_INVALID_CERT: /* NSM has no such code */
	case QTE_INTERNAL_ERROR:
		break;
	}
	return ERROR_CODE_INTERNAL_ERROR;
}

static const char *const devices[] = {"/dev/nsm", "/dev/qtsm", NULL};

QTE_API int32_t nsm_lib_init(void) { return qte_open(devices); }

QTE_API void nsm_lib_exit(int32_t fd) { qte_close(fd); }

QTE_API ErrorCode nsm_extend_pcr(int32_t fd, uint16_t index, const uint8_t *data, uint32_t data_len,
	uint8_t *pcr_data, uint32_t *pcr_data_len)
{
	if (data == NULL || pcr_data_len == NULL)
		return ERROR_CODE_INVALID_ARGUMENT;
	return code(qte_extend_pcr(fd, index, data, data_len, pcr_data, pcr_data_len));
}

QTE_API ErrorCode nsm_describe_pcr(int32_t fd, uint16_t index, bool *lock, uint8_t *data, uint32_t *data_len)
{
	if (lock == NULL || data_len == NULL)
		return ERROR_CODE_INVALID_ARGUMENT;
	return code(qte_describe_pcr(fd, index, lock, data, data_len));
}

QTE_API ErrorCode nsm_lock_pcr(int32_t fd, uint16_t index) { return code(qte_lock_pcr(fd, index)); }

QTE_API ErrorCode nsm_lock_pcrs(int32_t fd, uint16_t range) { return code(qte_lock_pcrs(fd, range)); }

QTE_API ErrorCode nsm_get_description(int32_t fd, struct NsmDescription *nsm_description)
{
	if (nsm_description == NULL)
		return ERROR_CODE_INVALID_ARGUMENT;
	struct qte_description d;
	enum qte_status st = qte_describe(fd, &d);
	if (st != QTE_OK)
		return code(st);
	NsmDescription *n = nsm_description;
	if (d.nlocked > sizeof n->locked_pcrs / sizeof n->locked_pcrs[0])
		return ERROR_CODE_INVALID_RESPONSE;
	memset(n, 0, sizeof *n);
	n->version_major = d.major;
	n->version_minor = d.minor;
	n->version_patch = d.patch;
	size_t len = d.module_id_len < sizeof n->module_id - 1 ? d.module_id_len : sizeof n->module_id - 1;
	memcpy(n->module_id, d.module_id, len);
	n->module_id_len = (uint32_t)len;
	n->max_pcrs = d.max_pcrs;
	memcpy(n->locked_pcrs, d.locked, d.nlocked * sizeof d.locked[0]);
	n->locked_pcrs_len = (uint32_t)d.nlocked;
	n->digest = (Digest)d.digest;
	return ERROR_CODE_SUCCESS;
}

QTE_API ErrorCode nsm_get_attestation_doc(int32_t fd, const uint8_t *user_data, uint32_t user_data_len,
	const uint8_t *nonce_data, uint32_t nonce_len, const uint8_t *pub_key_data, uint32_t pub_key_len,
	uint8_t *att_doc_data, uint32_t *att_doc_len)
{
	if (att_doc_len == NULL)
		return ERROR_CODE_INVALID_ARGUMENT;
	return code(qte_attestation(fd, user_data, user_data_len, nonce_data, nonce_len, pub_key_data, pub_key_len,
		att_doc_data, att_doc_len));
}

/* nsm_get_random gives one GetRandom answer, cut to *buf_len (any prefix
 * of random bytes is random), as AWS's library does. */
QTE_API ErrorCode nsm_get_random(int32_t fd, uint8_t *buf, uintptr_t *buf_len)
{
	if (fd < 0 || buf == NULL || buf_len == NULL || *buf_len == 0)
		return ERROR_CODE_INVALID_ARGUMENT;
	size_t n = 0;
	enum qte_status st = qte_random(fd, buf, *buf_len, &n);
	if (st == QTE_OK)
		*buf_len = n;
	return code(st);
}
