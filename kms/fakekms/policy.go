package fakekms

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/qtsm/attestation"
)

// Policy is the file qtenclave run --fake-kms reads: where the fake
// listens, whether it accepts QEMU's unsigned documents, and its keys.
//
//	{
//	  "listen": "127.0.0.1:4000",
//	  "allow_unsigned": true,
//	  "keys": [{"id": "app-key", "material": "<64 hex digits>",
//	            "pcrs": {"0": "<PCR0 from qtenclave build>"}, "require_recipient": true}]
//	}
type Policy struct {
	Listen        string      `json:"listen"`
	AllowUnsigned bool        `json:"allow_unsigned"`
	Keys          []PolicyKey `json:"keys"`
}

// PolicyKey is one key of a Policy.
type PolicyKey struct {
	ID       string            `json:"id"`
	Material string            `json:"material"`
	PCRs     map[string]string `json:"pcrs"`
	// ImageSha384 is kms:RecipientAttestation:ImageSha384: PCR0.
	ImageSha384      string `json:"image_sha384"`
	RequireRecipient bool   `json:"require_recipient"`
}

// LoadPolicy parses a policy file (strictly) and returns the server it
// describes and its listen address. It trusts the vendors' real roots;
// a local boot's documents are QEMU's, unsigned, and need allow_unsigned.
func LoadPolicy(b []byte) (*Server, string, error) {
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, "", fmt.Errorf("fake KMS policy: %w", err)
	}
	if p.Listen == "" {
		return nil, "", fmt.Errorf("fake KMS policy: no \"listen\" address")
	}
	s := &Server{Verify: attestation.Options{AllowUnsigned: p.AllowUnsigned}}
	for _, k := range p.Keys {
		m, err := hex.DecodeString(k.Material)
		if err != nil || len(m) != 32 || k.ID == "" {
			return nil, "", fmt.Errorf("fake KMS policy: key %q: want an id and 32 bytes of hex material", k.ID)
		}
		key := &Key{ID: k.ID, RequirePCRs: map[int]string{}, RequireRecipient: k.RequireRecipient}
		copy(key.Material[:], m)
		pcrs := k.PCRs
		if k.ImageSha384 != "" {
			if _, dup := pcrs["0"]; dup {
				return nil, "", fmt.Errorf("fake KMS policy: key %q: image_sha384 and pcrs[\"0\"] both given", k.ID)
			}
			pcrs = map[string]string{"0": k.ImageSha384}
			for i, v := range k.PCRs {
				pcrs[i] = v
			}
		}
		for i, v := range pcrs {
			n, err := strconv.Atoi(i)
			if err != nil || n < 0 || n > 31 {
				return nil, "", fmt.Errorf("fake KMS policy: key %q: PCR %q", k.ID, i)
			}
			if b, err := hex.DecodeString(v); err != nil || len(b) != 48 {
				return nil, "", fmt.Errorf("fake KMS policy: key %q: PCR%d %q is not 48 bytes of hex", k.ID, n, v)
			}
			key.RequirePCRs[n] = strings.ToLower(v)
		}
		s.AddKey(key)
	}
	return s, p.Listen, nil
}
