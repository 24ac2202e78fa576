// Command egress-demo is the e2e workload for egress: it fetches an
// https:// URL through the proxy that the environment names (init sets
// HTTPS_PROXY when the image opens egress), verifying the server against
// the CA file given, then a URL the image's policy refuses, and prints
// what happened to each.
//
//	egress-demo ALLOWED-URL REFUSED-URL CA.pem
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Println("egress-demo: usage: egress-demo ALLOWED-URL REFUSED-URL CA.pem")
		os.Exit(2)
	}
	pem, err := os.ReadFile(os.Args[3])
	if err != nil {
		fmt.Printf("egress-demo: %v\n", err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	fmt.Printf("egress-demo: HTTPS_PROXY=%s\n", os.Getenv("HTTPS_PROXY"))
	failed := false
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Printf("egress-demo: GET %s failed: %v\n", os.Args[1], err)
		failed = true
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Printf("egress-demo: GET %s -> %d %s\n", os.Args[1], resp.StatusCode, strings.TrimSpace(string(b)))
		failed = failed || resp.StatusCode != 200
	}
	resp, err = c.Get(os.Args[2])
	if err != nil {
		fmt.Printf("egress-demo: GET %s refused: %v\n", os.Args[2], err)
	} else {
		resp.Body.Close()
		fmt.Printf("egress-demo: GET %s -> %d, want a refusal\n", os.Args[2], resp.StatusCode)
		failed = true
	}
	if failed {
		fmt.Println("egress-demo: FAIL")
		os.Exit(1)
	}
	fmt.Println("egress-demo: PASS")
}
