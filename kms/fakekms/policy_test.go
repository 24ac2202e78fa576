package fakekms

import (
	"strings"
	"testing"
)

func TestLoadPolicy(t *testing.T) {
	m := strings.Repeat("ab", 32)
	p := strings.Repeat("cd", 48)
	s, addr, err := LoadPolicy([]byte(`{"listen":"127.0.0.1:4000","allow_unsigned":true,"keys":[{"id":"k","material":"` + m + `","pcrs":{"0":"` + strings.ToUpper(p) + `"},"require_recipient":true}]}`))
	if err != nil || addr != "127.0.0.1:4000" || !s.Verify.AllowUnsigned {
		t.Fatalf("LoadPolicy = %v, %q, %v", s, addr, err)
	}
	k, kerr := s.key("k")
	if kerr != nil || k.RequirePCRs[0] != p || !k.RequireRecipient || k.Material[0] != 0xab {
		t.Errorf("key = %+v, %v", k, kerr)
	}
	s2, _, err := LoadPolicy([]byte(`{"listen":"x","keys":[{"id":"k","material":"` + m + `","image_sha384":"` + p + `"}]}`))
	if k2, _ := s2.key("k"); err != nil || k2.RequirePCRs[0] != p {
		t.Errorf("image_sha384 = PCR0: %v %+v", err, k2)
	}
	for _, c := range []struct{ in, msg string }{
		{`{"listen":"x","keys":[{"id":"k","material":"` + m + `","image_sha384":"` + p + `","pcrs":{"0":"` + p + `"}}]}`, "both given"},
		{`{"keys":[]}`, "no \"listen\""},
		{`{"listen":"x","keyz":[]}`, "unknown field"},
		{`{"listen":"x","keys":[{"id":"k","material":"00"}]}`, "32 bytes"},
		{`{"listen":"x","keys":[{"id":"k","material":"` + m + `","pcrs":{"32":"` + p + `"}}]}`, "PCR \"32\""},
		{`{"listen":"x","keys":[{"id":"k","material":"` + m + `","pcrs":{"0":"abcd"}}]}`, "48 bytes"},
	} {
		if _, _, err := LoadPolicy([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("LoadPolicy(%s) = %v, want %q", c.in, err, c.msg)
		}
	}
}
