// Command kms-demo is the e2e workload for KMS's recipient flow: it asks
// for the same secret twice, through the qtsm CLI (/qtsm kms decrypt, its
// output passed through) and through the agent's POST /v1/kms/decrypt, and
// prints what each got.
//
//	kms-demo ENDPOINT CIPHERTEXT-B64 KEY-ID K=V
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Println("kms-demo: usage: kms-demo ENDPOINT CIPHERTEXT-B64 KEY-ID K=V")
		os.Exit(2)
	}
	endpoint, ct, keyID, kv := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	failed := false

	cli := exec.Command("/qtsm", "kms", "decrypt", "--endpoint", endpoint, "--ciphertext", ct, "--key-id", keyID, "--encryption-context", kv)
	cli.Stdout, cli.Stderr = os.Stdout, os.Stderr
	if err := cli.Run(); err != nil {
		fmt.Printf("kms-demo: the CLI failed: %v\n", err)
		failed = true
	}

	blob, _ := base64.StdEncoding.DecodeString(ct)
	k, v, _ := strings.Cut(kv, "=")
	body, _ := json.Marshal(map[string]any{
		"endpoint": endpoint, "region": os.Getenv("AWS_REGION"), "ciphertext": blob, "key_id": keyID,
		"encryption_context": map[string]string{k: v},
		"credentials":        map[string]string{"access_key_id": os.Getenv("AWS_ACCESS_KEY_ID"), "secret_access_key": os.Getenv("AWS_SECRET_ACCESS_KEY")},
	})
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", "/run/qtsm.sock")
		}}}
	resp, err := c.Post("http://qtsm/v1/kms/decrypt", "application/json", strings.NewReader(string(body)))
	if err != nil {
		fmt.Printf("kms-demo: agent: %v\n", err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != 200 {
		fmt.Printf("kms-demo: agent: %d %s\n", resp.StatusCode, strings.TrimSpace(string(b)))
		os.Exit(1)
	}
	var out struct{ Plaintext []byte }
	json.Unmarshal(b, &out)
	fmt.Printf("kms-demo: agent: %s\n", base64.StdEncoding.EncodeToString(out.Plaintext))
	if failed {
		os.Exit(1)
	}
}
