package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// testCA makes a CA and a server certificate for names, valid from 1970
// (the guest's clock is not the test's concern) for a century.
func testCA(t *testing.T, names ...string) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	from, until := time.Unix(0, 0), time.Now().AddDate(100, 0, 0)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qtenclave e2e CA"},
		NotBefore: from, NotAfter: until, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: from, NotAfter: until, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestIntegrationBootEgress: the workload fetches https:// from a TLS
// server on the host's loopback through the proxy that init's environment
// names, the certificate verified in the enclave against a CA baked into
// the image; a destination outside the image's policy is refused with 403,
// and the log stream names the rule (issue 11, scenarios a and c).
func TestIntegrationBootEgress(t *testing.T) {
	h := setup(t)
	caPEM, cert := testCA(t, "egress.test")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from the host to %s over %s", r.Host, tls.VersionName(r.TLS.Version))
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 30 * time.Second,
	}
	go srv.ServeTLS(l, "", "")
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port

	fsdir := filepath.Join(h.tmp, "egress-rootfs")
	if err := os.MkdirAll(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=",
		"-o", filepath.Join(fsdir, "egress-demo"), "./e2e/testdata/egress-demo")
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build egress-demo: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(fsdir, "ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	allowed := fmt.Sprintf("https://egress.test:%d/hello", port)
	refused := fmt.Sprintf("https://denied.test:%d/", port)
	ref := h.packImage(t, "egress", fsdir, ocilayout.Config{Entrypoint: []string{"/egress-demo", allowed, refused, "/ca.pem"}})
	eifPath, _ := h.buildImage(t, "egress", ref, "--egress-allow", fmt.Sprintf("egress.test:%d", port))
	r := h.boot(t, "egress", eifPath, "--egress-host", "egress.test=127.0.0.1", "--egress-host", "denied.test=127.0.0.1")
	if r.code != 0 {
		t.Errorf("qtenclave run exit = %d, want 0", r.code)
	}
	q := regexp.QuoteMeta
	expect(t, r,
		`^init: step egress ok in [0-9.]+ms: proxy on 127.0.0.1:3128, 1 allow and 0 deny rules$`,
		`^qtsm-agent: .*egress proxy on 127.0.0.1:3128 \(1 allow, 0 deny rules, tunnels to 3:9004\)$`,
		`^stdout: egress-demo: HTTPS_PROXY=http://127.0.0.1:3128$`,
		`^stdout: egress-demo: GET `+q(allowed)+` -> 200 hello from the host to egress.test:\d+ over TLS 1.3$`,
		`^stdout: egress-demo: GET `+q(refused)+` refused: .*Forbidden`,
		`^qtsm-agent: .*egress: refused CONNECT denied.test:\d+: default deny$`,
		`^stdout: egress-demo: PASS$`,
		`^qtenclave-exit: code=0 signal=0 reason=exited$`,
	)
}
