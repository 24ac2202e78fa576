package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// bulkSize and bulk match e2e/testdata/egress-demo.
const bulkSize = 64 << 20

func bulk() io.Reader { return io.LimitReader(mrand.NewChaCha8([32]byte{'q', 't', 'e'}), bulkSize) }

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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestIntegrationBootEgress boots a workload that uses every way out and
// in (issue 11's scenarios): (a) https:// to a TLS server on the host's
// loopback through the proxy init's environment names, the certificate
// verified in the enclave against a CA baked into the image; (b) the same
// with no proxy, through a transparent forward; (c) a destination outside
// the image's policy refused with 403, the rule on the log stream; (d) a
// host client reaching the workload's TCP server through --publish; (e)
// 64 MiB each way through egress and through ingress, SHA-256 equal.
func TestIntegrationBootEgress(t *testing.T) {
	h := setup(t)
	caPEM, cert := testCA(t, "egress.test", "forward.test")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host to %s over %s", r.Host, tls.VersionName(r.TLS.Version))
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			io.Copy(h, r.Body)
			fmt.Fprintln(w, hex.EncodeToString(h.Sum(nil)))
			return
		}
		io.Copy(w, bulk())
	})
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 30 * time.Second}
	go srv.ServeTLS(l, "", "")
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	bulkSum := sha256.New()
	io.Copy(bulkSum, bulk())
	wantBulk := hex.EncodeToString(bulkSum.Sum(nil))

	fsdir := filepath.Join(h.tmp, "egress-rootfs")
	if err := os.MkdirAll(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.goBuild(t, "./e2e/testdata/egress-demo", filepath.Join(fsdir, "egress-demo"))
	if err := os.WriteFile(filepath.Join(fsdir, "ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	allowed := fmt.Sprintf("https://egress.test:%d/hello", port)
	refused := fmt.Sprintf("https://denied.test:%d/", port)
	direct := fmt.Sprintf("https://forward.test:%d/hello", port)
	bulkURL := fmt.Sprintf("https://egress.test:%d/bulk", port)
	const servePort = 8080
	ref := h.packImage(t, "egress", fsdir, ocilayout.Config{Entrypoint: []string{"/egress-demo", "--ca", "/ca.pem",
		"--fetch", allowed, "--refuse", refused, "--direct", direct, "--bulk", bulkURL, "--serve", fmt.Sprint(servePort)}})
	eifPath, _ := h.buildImage(t, "egress", ref,
		"--egress-allow", fmt.Sprintf("egress.test:%d", port), "--egress-allow", fmt.Sprintf("forward.test:%d", port),
		"--egress-forward", fmt.Sprintf("forward.test:%d", port), "--publish", fmt.Sprint(servePort))

	hostPort := freePort(t)
	ingress := make(chan error, 1)
	started := false
	r := h.bootWatching(t, "egress", eifPath, func(line string, _ *os.Process) {
		if started || line != fmt.Sprintf("stdout: egress-demo: serving on 127.0.0.1:%d", servePort) {
			return
		}
		started = true
		go func() { ingress <- echo64(fmt.Sprintf("127.0.0.1:%d", hostPort)) }()
	}, "--egress-host", "egress.test=127.0.0.1", "--egress-host", "denied.test=127.0.0.1", "--egress-host", "forward.test=127.0.0.1",
		"--publish", fmt.Sprintf("%d:%d", hostPort, servePort))
	if r.code != 0 {
		t.Errorf("qtenclave run exit = %d, want 0", r.code)
	}
	if !started {
		t.Errorf("the workload never served")
	} else if err := <-ingress; err != nil {
		t.Errorf("ingress: %v", err)
	}
	q := regexp.QuoteMeta
	expect(t, r,
		`^init: step egress ok in [0-9.]+ms: proxy on 127.0.0.1:3128, 2 allow and 0 deny rules, 1 forwards$`,
		`^qtsm-agent: .*egress proxy on 127.0.0.1:3128 \(2 allow, 0 deny rules, tunnels to 3:9004\)$`,
		`^qtsm-agent: .*egress: forward 127.0.0.2:\d+ to forward.test:\d+$`,
		`^qtsm-agent: .*ingress: vsock port 8080 to 127.0.0.1:8080$`,
		`^stdout: egress-demo: HTTPS_PROXY=http://127.0.0.1:3128$`,
		`^stdout: egress-demo: GET `+q(allowed)+` -> 200 hello from the host to egress.test:\d+ over TLS 1.3$`,
		`^stdout: egress-demo: GET `+q(refused)+` refused: .*Forbidden`,
		`^qtsm-agent: .*egress: refused CONNECT denied.test:\d+: default deny$`,
		`^stdout: egress-demo: GET `+q(direct)+` without a proxy -> 200 hello from the host to forward.test:\d+ over TLS 1.3$`,
		`^stdout: egress-demo: bulk down bytes=67108864 sha256=`+wantBulk+` in `,
		`^stdout: egress-demo: bulk up bytes=67108864 sha256=`+wantBulk+` server=`+wantBulk+` in `,
		`^stdout: egress-demo: echoed 67108864 bytes$`,
		`^stdout: egress-demo: PASS$`,
		`^qtenclave-exit: code=0 signal=0 reason=exited$`,
	)
	for _, m := range regexp.MustCompile(`(?m)^stdout: egress-demo: (bulk \w+) .* in ([0-9.]+)s$`).FindAllStringSubmatch(r.stream, -1) {
		t.Logf("%s: 64 MiB in %ss under TCG", m[1], m[2])
	}
}

// echo64 sends 64 MiB to the workload's echo server through --publish and
// checks that the same bytes come back.
func echo64(addr string) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(150 * time.Second))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(bulk(), sent))
		c.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("after %d bytes back: %v", n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("sending: %v", err)
	}
	if n != bulkSize || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("%d bytes back, SHA-256 equal %v", n, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
	}
	fmt.Fprintf(os.Stderr, "e2e: ingress echo of 64 MiB each way in %.1fs\n", time.Since(start).Seconds())
	return nil
}
