package pcr

import (
	"encoding/hex"
	"testing"
)

func TestKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"Extend(zero, 010203)", Extend(Zero(), []byte{1, 2, 3}),
			"cb178fcd3f328244c05c6248723fd068b3a1dda878e1ab8be911098f199958add55d0c27f04826d27b44d949a650694e"},
		{"PCR3(role)", Extend(Zero(), []byte("arn:aws:iam::123456789012:role/Webserver")),
			"78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6"},
		{"PCR4(instance)", Extend(Zero(), []byte("i-1234567890abcdef0")),
			"08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0"},
		{"Measure(empty)", Measure(nil),
			"21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestStreamingMatchesMeasure(t *testing.T) {
	content := []byte("kernel bytes then cmdline then ramdisk")
	h := NewHash()
	h.Write(content[:10])
	h.Write(content[10:])
	if got, want := hex.EncodeToString(FromDigest(h.Sum(nil))), hex.EncodeToString(Measure(content)); got != want {
		t.Errorf("streamed = %s, want %s", got, want)
	}
}
