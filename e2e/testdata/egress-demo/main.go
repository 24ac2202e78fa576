// Command egress-demo is the e2e workload for the way out and the way in.
// Each flag is one step, run in this order:
//
//	--ca FILE      trust this CA (for the https:// steps)
//	--fetch URL    GET through the proxy the environment names (HTTPS_PROXY)
//	--refuse URL   GET through the proxy; the policy must refuse it
//	--direct URL   GET with no proxy: the name resolves through /etc/hosts
//	               to a transparent forward
//	--bulk URL     GET 64 MiB from URL, then POST 64 MiB to it (the server
//	               answers the SHA-256 it received), through the proxy
//	--serve PORT   serve one echo connection on 127.0.0.1:PORT (ingress)
//
// It prints a line per step and PASS or FAIL at the end.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// BulkSize is what --bulk moves each way.
const BulkSize = 64 << 20

// Bulk is the deterministic content of a bulk transfer (the host test
// makes the same).
func Bulk() io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'q', 't', 'e'}), BulkSize)
}

var failed bool

func say(format string, args ...any) { fmt.Printf("egress-demo: "+format+"\n", args...) }

func fail(format string, args ...any) {
	say(format, args...)
	failed = true
}

func main() {
	ca := flag.String("ca", "", "CA file")
	fetch := flag.String("fetch", "", "URL through the proxy")
	refuse := flag.String("refuse", "", "URL the policy refuses")
	direct := flag.String("direct", "", "URL through a forward")
	bulk := flag.String("bulk", "", "URL for 64 MiB each way")
	serve := flag.Int("serve", 0, "echo port")
	flag.Parse()
	pool := x509.NewCertPool()
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			fail("%v", err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	client := func(proxy bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		if proxy {
			tr.Proxy = http.ProxyFromEnvironment
		}
		return &http.Client{Timeout: 120 * time.Second, Transport: tr}
	}
	say("HTTPS_PROXY=%s", os.Getenv("HTTPS_PROXY"))
	if *fetch != "" {
		get(client(true), *fetch, "")
	}
	if *refuse != "" {
		resp, err := client(true).Get(*refuse)
		if err != nil {
			say("GET %s refused: %v", *refuse, err)
		} else {
			resp.Body.Close()
			fail("GET %s -> %d, want a refusal", *refuse, resp.StatusCode)
		}
	}
	if *direct != "" {
		get(client(false), *direct, " without a proxy")
	}
	if *bulk != "" {
		bulkSteps(client(true), *bulk)
	}
	if *serve != 0 {
		echoOnce(*serve)
	}
	if failed {
		say("FAIL")
		os.Exit(1)
	}
	say("PASS")
}

func get(c *http.Client, url, how string) {
	resp, err := c.Get(url)
	if err != nil {
		fail("GET %s%s failed: %v", url, how, err)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	say("GET %s%s -> %d %s", url, how, resp.StatusCode, strings.TrimSpace(string(b)))
	if resp.StatusCode != 200 {
		failed = true
	}
}

func bulkSteps(c *http.Client, url string) {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		fail("bulk GET: %v", err)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil {
		fail("bulk GET: after %d bytes: %v", n, err)
		return
	}
	say("bulk down bytes=%d sha256=%s in %.1fs", n, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds())
	start = time.Now()
	up := sha256.New()
	resp, err = c.Post(url, "application/octet-stream", io.TeeReader(Bulk(), up))
	if err != nil {
		fail("bulk POST: %v", err)
		return
	}
	got, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	resp.Body.Close()
	say("bulk up bytes=%d sha256=%s server=%s in %.1fs", BulkSize, hex.EncodeToString(up.Sum(nil)), strings.TrimSpace(string(got)), time.Since(start).Seconds())
}

func echoOnce(port int) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail("serve: %v", err)
		return
	}
	defer l.Close()
	say("serving on %s", l.Addr())
	c, err := l.Accept()
	if err != nil {
		fail("serve: %v", err)
		return
	}
	n, err := io.Copy(c, c)
	c.Close()
	if err != nil {
		fail("echo: after %d bytes: %v", n, err)
		return
	}
	say("echoed %d bytes", n)
}
