// Package kms is the enclave application's side of KMS's recipient flow:
// secrets released only to a measured enclave. A Recipient holds an
// RSA-2048 key (ephemeral per process, or given) and asks the secure
// module (qtsm.Module: the agent's client or the device) for an
// attestation document carrying its public key; the KMS request carries
// that document, KMS checks it against the key policy's PCR conditions and
// answers with the secret sealed to the key (kms/envelope), which only
// this process can open. AWS is AWS KMS's client (aws-sdk-go-v2: SigV4,
// retries, endpoints); every error says which step failed (*StepError).
package kms
