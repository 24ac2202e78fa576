package eif

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Metadata is the metadata section (mandatory in v4, not measured): the JSON
// document nitro-cli writes, field names as nitro-cli spells them.
type Metadata struct {
	ImageName     string        `json:"ImageName"`
	ImageVersion  string        `json:"ImageVersion"`
	BuildMetadata BuildMetadata `json:"BuildMetadata"`
	// DockerInfo describes the source image (nitro-cli stores `docker
	// inspect`; we store the image config). Any JSON value; null if unset.
	DockerInfo json.RawMessage `json:"DockerInfo"`
	// CustomMetadata is free-form JSON from the user; null if unset.
	CustomMetadata json.RawMessage `json:"CustomMetadata"`
}

// BuildMetadata describes the build.
type BuildMetadata struct {
	BuildTime        string `json:"BuildTime"`
	BuildTool        string `json:"BuildTool"`
	BuildToolVersion string `json:"BuildToolVersion"`
	OperatingSystem  string `json:"OperatingSystem"`
	KernelVersion    string `json:"KernelVersion"`
}

// Marshal encodes the metadata as compact JSON. The encoding is
// deterministic: struct fields in declaration order, DockerInfo and
// CustomMetadata compacted as given (callers canonicalise them if their
// source is not deterministic, see CanonicalJSON).
func (m *Metadata) Marshal() ([]byte, error) {
	c := *m
	if len(c.DockerInfo) == 0 {
		c.DockerInfo = json.RawMessage("null")
	}
	if len(c.CustomMetadata) == 0 {
		c.CustomMetadata = json.RawMessage("null")
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("eif: encode metadata: %w", err)
	}
	return b, nil
}

// ParseMetadata decodes a metadata section. Unknown fields are kept out of
// the struct but do not make it invalid (other writers may add some).
func ParseMetadata(data []byte) (*Metadata, error) {
	var m Metadata
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, invalid(ErrMetadata, "not JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid(ErrMetadata, "trailing data after the JSON document")
	}
	return &m, nil
}

// CanonicalJSON re-encodes a JSON document with object keys sorted and no
// insignificant space, so that equal documents give equal bytes.
func CanonicalJSON(data []byte) (json.RawMessage, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON document")
	}
	return json.Marshal(v) // maps are encoded with sorted keys
}

// EpochTime is the build time used when nothing else is asked for.
var EpochTime = time.Unix(0, 0).UTC()

// BuildTime returns the build time to record: flag if non-empty (RFC 3339,
// or seconds since the epoch), else $SOURCE_DATE_EPOCH, else the epoch —
// never the wall clock, so that builds are reproducible. The result is
// formatted as RFC 3339 in UTC.
func BuildTime(flag string) (string, error) {
	s, what := flag, "--build-time"
	if s == "" {
		s, what = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if s == "" {
		return EpochTime.Format(time.RFC3339), nil
	}
	if s == "now" && what == "--build-time" {
		return time.Now().UTC().Truncate(time.Second).Format(time.RFC3339), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC().Format(time.RFC3339), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	return "", fmt.Errorf("%s %q: want seconds since the epoch or RFC 3339", what, s)
}
