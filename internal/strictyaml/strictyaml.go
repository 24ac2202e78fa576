// Package strictyaml decodes the project's YAML files (qtenclave build
// --config, vsock-proxy's allowlist) one way: at most a size limit, one
// document, and an unknown key is an error rather than a setting silently
// ignored (a typo must not loosen a policy).
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// Decode decodes b (at most max bytes, one document) into v, refusing
// keys v has no field for. An empty document leaves v as it is.
func Decode(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%d bytes, more than %d", len(b), max)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}
