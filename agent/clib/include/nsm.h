/*
 * nsm.h: AWS's nsm-lib C interface (Nitro Enclaves), provided by
 * qtenclave's drop-in libnsm, which goes through the enclave's qtsm-agent
 * ($QTSM_SOCKET, default /run/qtsm.sock) and opens /dev/nsm itself only
 * when no agent socket exists. Names, types and values are those of AWS's
 * generated header; the text is ours. See agent/clib/README.md.
 */
#ifndef NSM_LIB_H
#define NSM_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Status of every nsm_* call. */
typedef enum ErrorCode {
    ERROR_CODE_SUCCESS,
    ERROR_CODE_INVALID_ARGUMENT,
    ERROR_CODE_INVALID_INDEX,
    ERROR_CODE_INVALID_RESPONSE,
    ERROR_CODE_READ_ONLY_INDEX,
    ERROR_CODE_INVALID_OPERATION,
    ERROR_CODE_BUFFER_TOO_SMALL,
    ERROR_CODE_INPUT_TOO_LARGE,
    ERROR_CODE_INTERNAL_ERROR,
} ErrorCode;

/* The PCR bank's digest. */
typedef enum Digest {
    DIGEST_SHA256,
    DIGEST_SHA384,
    DIGEST_SHA512,
} Digest;

typedef struct NsmDescription {
    uint16_t version_major;
    uint16_t version_minor;
    uint16_t version_patch;
    uint8_t module_id[100];
    uint32_t module_id_len;
    uint16_t max_pcrs;
    uint16_t locked_pcrs[64];
    uint32_t locked_pcrs_len;
    Digest digest;
} NsmDescription;

#ifdef __cplusplus
extern "C" {
#endif

/* A descriptor (> 0) for the calls below, or a negative value. */
int32_t nsm_lib_init(void);

void nsm_lib_exit(int32_t fd);

/* ExtendPCR; pcr_data_len is capacity in, length out. */
ErrorCode nsm_extend_pcr(int32_t fd, uint16_t index, const uint8_t *data,
    uint32_t data_len, uint8_t *pcr_data, uint32_t *pcr_data_len);

/* DescribePCR; data_len is capacity in, length out. */
ErrorCode nsm_describe_pcr(int32_t fd, uint16_t index, bool *lock, uint8_t *data,
    uint32_t *data_len);

ErrorCode nsm_lock_pcr(int32_t fd, uint16_t index);

/* Locks PCRs [0, range). */
ErrorCode nsm_lock_pcrs(int32_t fd, uint16_t range);

ErrorCode nsm_get_description(int32_t fd, struct NsmDescription *nsm_description);

/* Attestation; att_doc_len is capacity in, length out. */
ErrorCode nsm_get_attestation_doc(int32_t fd, const uint8_t *user_data,
    uint32_t user_data_len, const uint8_t *nonce_data, uint32_t nonce_len,
    const uint8_t *pub_key_data, uint32_t pub_key_len, uint8_t *att_doc_data,
    uint32_t *att_doc_len);

/* One GetRandom answer, at most *buf_len bytes; *buf_len is set to the
 * number of bytes written. */
ErrorCode nsm_get_random(int32_t fd, uint8_t *buf, uintptr_t *buf_len);

#ifdef __cplusplus
}
#endif

#endif
