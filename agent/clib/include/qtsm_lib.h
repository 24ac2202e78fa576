/*
 * qtsm_lib.h: Huawei's libqtsm C interface (Qingtian Enclaves), provided by
 * qtenclave's drop-in libqtsm, which goes through the enclave's qtsm-agent
 * ($QTSM_SOCKET, default /run/qtsm.sock) and opens the device itself only
 * when no agent socket exists. Every call returns an enum error_code.
 * Output lengths are capacity in, length out: a buffer too small gives
 * BUFFER_TOO_SMALL with the needed length written back and nothing copied.
 * See agent/clib/README.md.
 */
#ifndef QTSM_LIB_H
#define QTSM_LIB_H

#include <stdint.h>
#include <stdbool.h>
#include "qtsm_lib_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A handle (> 0) for the calls below, or a negative errno value. */
int qtsm_lib_init(void);

/* Releases a handle from qtsm_lib_init. */
void qtsm_lib_exit(int qtsm_dev_fd);

/* DescribePCR: the PCR's lock state and value (data_len: capacity in, length out). */
int qtsm_describe_pcr(const int fd, const uint16_t index, bool *locked,
    uint8_t *data, uint32_t *data_len);

/* ExtendPCR: extends PCR index (16..31) with req_data; the new value out. */
int qtsm_extend_pcr(const int fd, const uint16_t index, const uint8_t *req_data,
    const uint32_t req_data_len, uint8_t *pcr_data, uint32_t *pcr_data_len);

/* LockPCR: locks PCR index (16..31). */
int qtsm_lock_pcr(const int fd, const uint16_t index, bool *locked);

/* Locks the count PCRs whose indexes are in range[0..count). */
int qtsm_lock_pcrs(const int fd, const uint32_t count, const uint16_t *range,
    bool *locked);

/* Describe: the module's version, id, PCR count, locked PCRs and digest. */
int qtsm_get_describe(const int fd, describe_qtsm *qtsm_description);

/* Attestation: a COSE_Sign1 document with the given optional fields (NULL:
 * absent); att_doc_data_len is capacity in, length out. */
int qtsm_get_attestation(const int fd,
    const uint8_t *user_data, const uint32_t user_data_len,
    const uint8_t *nonce_data, const uint32_t nonce_data_len,
    const uint8_t *pubkey_data, const uint32_t pubkey_len,
    uint8_t *att_doc_data, uint32_t *att_doc_data_len);

/* Fills rnd_data with rnd_data_len random bytes from the module. */
int qtsm_get_random(const int fd, uint8_t *rnd_data, const uint32_t rnd_data_len);

#ifdef __cplusplus
}
#endif

#endif
