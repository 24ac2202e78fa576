package qtsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Known-answer encodings from docs/protocol.md §2 (the vendors' libraries' bytes).
var requestKATs = []struct {
	name string
	req  Request
	hex  string
}{
	{"GetRandom", GetRandomRequest{}, "6947657452616e646f6d"},
	{"DescribeNSM", DescribeRequest{}, "6b44657363726962654e534d"},
	{"DescribePCR{0}", DescribePCRRequest{Index: 0}, "a16b4465736372696265504352a165696e64657800"},
	{"ExtendPCR{16,010203}", ExtendPCRRequest{Index: 16, Data: []byte{1, 2, 3}}, "a169457874656e64504352a265696e64657810646461746143010203"},
	{"LockPCR{16}", LockPCRRequest{Index: 16}, "a1674c6f636b504352a165696e64657810"},
	{"LockPCRs{32}", LockPCRsRequest{Range: 32}, "a1684c6f636b50435273a16572616e67651820"},
	{"Attestation{null,null,null}", AttestationRequest{}, "a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365f66a7075626c69635f6b6579f6"},
}

func TestRequestKATs(t *testing.T) {
	for _, tc := range requestKATs {
		got, err := EncodeRequest(tc.req)
		if err != nil {
			t.Errorf("EncodeRequest(%s) error %v", tc.name, err)
			continue
		}
		if h := hex.EncodeToString(got); h != tc.hex {
			t.Errorf("EncodeRequest(%s) = %s, want %s", tc.name, h, tc.hex)
		}
		want, _ := hex.DecodeString(tc.hex)
		back, err := DecodeRequest(want)
		if err != nil {
			t.Errorf("DecodeRequest(%s) error %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(back, tc.req) {
			t.Errorf("DecodeRequest(%s) = %#v, want %#v", tc.name, back, tc.req)
		}
	}
}

func TestErrorResponseKAT(t *testing.T) {
	const h = "a1654572726f726c496e76616c6964496e646578"
	b, _ := hex.DecodeString(h)
	r, err := DecodeResponse(b)
	if err != nil {
		t.Fatalf("DecodeResponse(Error) error %v", err)
	}
	e, ok := r.(ErrorResponse)
	if !ok || e.Code != CodeInvalidIndex || e.Name != "InvalidIndex" {
		t.Fatalf("DecodeResponse(Error) = %#v, want InvalidIndex", r)
	}
	enc, err := EncodeResponse(ErrorResponse{Code: CodeInvalidIndex})
	if err != nil || hex.EncodeToString(enc) != h {
		t.Errorf("EncodeResponse(InvalidIndex) = %x, %v, want %s", enc, err, h)
	}
	if !errors.Is(e.Err("DescribePCR"), ErrInvalidIndex) {
		t.Errorf("errors.Is(%v, ErrInvalidIndex) = false", e.Err("DescribePCR"))
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []Response{
		DescribeResponse{Description{VersionMajor: 1, VersionMinor: 2, VersionPatch: 3, ModuleID: "i-0abc-enc0",
			MaxPCRs: 32, LockedPCRs: []uint16{0, 1, 2, 15}, Digest: "SHA384"}},
		DescribePCRResponse{Lock: true, Data: bytes.Repeat([]byte{7}, 48)},
		ExtendPCRResponse{Data: bytes.Repeat([]byte{8}, 48)},
		LockPCRResponse{},
		LockPCRsResponse{},
		AttestationResponse{Document: []byte{0x84, 1, 2}},
		GetRandomResponse{Random: bytes.Repeat([]byte{9}, 256)},
		ErrorResponse{Code: CodeReadOnlyIndex, Name: "ReadOnlyIndex"},
	} {
		b, err := EncodeResponse(r)
		if err != nil {
			t.Errorf("EncodeResponse(%T) error %v", r, err)
			continue
		}
		back, err := DecodeResponse(b)
		if err != nil {
			t.Errorf("DecodeResponse(%x) error %v", b, err)
			continue
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("DecodeResponse(EncodeResponse(%#v)) = %#v", r, back)
		}
	}
}

// Hand-written encodings in the module's own byte layout (serde field order,
// shortest integers) must decode.
func TestResponseBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want Response
	}{
		{"LockPCR", "674c6f636b504352", LockPCRResponse{}},
		{"DescribePCR", "a16b4465736372696265504352a2646c6f636bf56464617461420102", DescribePCRResponse{Lock: true, Data: []byte{1, 2}}},
		{"GetRandom", "a16947657452616e646f6da16672616e646f6d43aabbcc", GetRandomResponse{Random: []byte{0xaa, 0xbb, 0xcc}}},
		// Indefinite-length map and a non-minimal integer (Qingtian does both).
		{"DescribePCR indef", "a16b4465736372696265504352bf646c6f636bf46464617461420102ff", DescribePCRResponse{Lock: false, Data: []byte{1, 2}}},
		{"unknown error name", "a1654572726f72654f74686572", ErrorResponse{Code: CodeUnknown, Name: "Other"}},
	} {
		b, _ := hex.DecodeString(tc.hex)
		got, err := DecodeResponse(b)
		if err != nil {
			t.Errorf("DecodeResponse(%s) error %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeResponse(%s) = %#v, want %#v", tc.name, got, tc.want)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, tc := range []struct{ name, hex string }{
		{"empty", ""},
		{"integer", "01"},
		{"two keys", "a2614101614202"},
		{"unknown variant", "6642616e616e61"},
		{"unit with body", "a16947657452616e646f6df6"},
		{"missing index", "a16b4465736372696265504352a0"},
		{"index too big", "a16b4465736372696265504352a165696e6465781a00010000"},
		{"negative index", "a16b4465736372696265504352a165696e64657820"},
		{"index wrong type", "a16b4465736372696265504352a165696e6465784100"},
		{"duplicate key", "a16b4465736372696265504352a265696e6465780065696e64657801"},
		{"trailing bytes", "6947657452616e646f6d00"},
		{"truncated", "a169457874656e64504352a265696e646578106464617461430102"},
		{"extend without data", "a169457874656e64504352a165696e64657810"},
	} {
		b, _ := hex.DecodeString(tc.hex)
		if r, err := DecodeRequest(b); err == nil {
			t.Errorf("DecodeRequest(%s = %s) = %#v, want error", tc.name, tc.hex, r)
		} else if !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeRequest(%s) error %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestEncodeRejectsPointers(t *testing.T) {
	if _, err := EncodeRequest(&DescribePCRRequest{}); err == nil {
		t.Error("EncodeRequest(pointer) = nil error, want error")
	}
}

// The encoding is deterministic: the same value always encodes identically.
func TestDeterministic(t *testing.T) {
	r := AttestationRequest{UserData: []byte("u"), Nonce: []byte{}, PublicKey: nil}
	a, _ := EncodeRequest(r)
	for range 50 {
		b, _ := EncodeRequest(r)
		if !bytes.Equal(a, b) {
			t.Fatalf("EncodeRequest not deterministic: %x vs %x", a, b)
		}
	}
	// Empty (non-nil) encodes as an empty byte string, nil as null.
	if !bytes.Contains(a, []byte{0x65, 'n', 'o', 'n', 'c', 'e', 0x40}) || !bytes.HasSuffix(a, []byte{0xf6}) {
		t.Errorf("EncodeRequest(%#v) = %x, want nonce as h'' and public_key as null", r, a)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, tc := range requestKATs {
		b, _ := hex.DecodeString(tc.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same value.
		enc, err := EncodeRequest(r)
		if err != nil {
			t.Fatalf("EncodeRequest(%#v) error %v", r, err)
		}
		back, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("DecodeRequest(EncodeRequest(%#v)) error %v", r, err)
		}
		if !reflect.DeepEqual(normalise(back), normalise(r)) {
			t.Fatalf("round trip %#v -> %#v", r, back)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, h := range []string{"a1654572726f726c496e76616c6964496e646578", "674c6f636b504352",
		"a16b4465736372696265504352a2646c6f636bf56464617461420102", "a16947657452616e646f6da16672616e646f6d43aabbcc"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		if _, err := EncodeResponse(r); err != nil {
			t.Fatalf("EncodeResponse(%#v) error %v", r, err)
		}
	})
}

// normalise maps empty byte slices to nil where the encoding cannot tell
// them apart (ExtendPCR data is always a byte string).
func normalise(r Request) Request {
	if e, ok := r.(ExtendPCRRequest); ok && len(e.Data) == 0 {
		e.Data = nil
		return e
	}
	return r
}

func BenchmarkAttestationCodec(b *testing.B) {
	req := AttestationRequest{UserData: bytes.Repeat([]byte{1}, 64), Nonce: bytes.Repeat([]byte{2}, 32), PublicKey: bytes.Repeat([]byte{3}, 97)}
	resp := AttestationResponse{Document: bytes.Repeat([]byte{4}, 4500)}
	b.ReportAllocs()
	for b.Loop() {
		rb, err := EncodeRequest(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeRequest(rb); err != nil {
			b.Fatal(err)
		}
		ab, err := EncodeResponse(resp)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeResponse(ab); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExtendPCRNullData: null for ExtendPCR's data (what Go's hf/nsm sends
// for a nil slice) is refused, saying what it is (issue 14, item 9); the
// module's own decoder refuses it too.
func TestExtendPCRNullData(t *testing.T) {
	const (
		null    = "a169457874656e64504352a265696e646578106464617461f6" // {"ExtendPCR":{"index":16,"data":null}}
		missing = "a169457874656e64504352a165696e64657810"             // {"ExtendPCR":{"index":16}}
		empty   = "a169457874656e64504352a265696e64657810646461746140" // {"ExtendPCR":{"index":16,"data":h''}}
	)
	dec := func(h string) (Request, error) {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		return DecodeRequest(b)
	}
	if _, err := dec(null); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `field "data" is null`) {
		t.Errorf("DecodeRequest(data null) = %v, want ErrMalformed saying data is null", err)
	}
	if _, err := dec(missing); err == nil || !strings.Contains(err.Error(), `missing field "data"`) {
		t.Errorf("DecodeRequest(no data) = %v, want missing field", err)
	}
	if r, err := dec(empty); err != nil || r.(ExtendPCRRequest).Data == nil {
		t.Errorf("DecodeRequest(empty data) = %#v, %v; want empty, non-nil data", r, err)
	}
}
