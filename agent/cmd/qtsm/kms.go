package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/qtenclave/enclave/kms"
)

const kmsUsage = `kms decrypt --ciphertext B64 [--key-id ID] [--encryption-context K=V]..
  kms generate-data-key --key-id ID [--bytes N] [--encryption-context K=V]..
  kms generate-data-key-pair --key-id ID [--key-pair-spec ECC_NIST_P256|ECC_NIST_P384|RSA_2048|...]
  kms generate-random [--bytes N]
  kms proxy [--listen 127.0.0.1:4000]   for unmodified AWS SDK programs (AWS_ENDPOINT_URL_KMS)
    common: [--vendor aws|huawei] [--region R] [--endpoint URL] [--recipient-key FILE.pem]
    huawei: decrypt (decrypt-datakey; --bytes = the data key's length, default 32; the
    ciphertext is the cipher_text's bytes), generate-data-key (create-datakey; its cipher_text
    in --json), generate-random (gen-random); --project-id; credentials HUAWEICLOUD_SDK_AK,
    HUAWEICLOUD_SDK_SK, HUAWEICLOUD_SDK_PROJECT_ID; UNVERIFIED against Huawei KMS (its envelope
    format is not public)
    KMS releases the secret only to this attested enclave (a Recipient with an
    attestation document); it is printed as one line of standard base64 (--json:
    the whole answer; for a key pair the plaintext is the private key, PKCS#8 DER). Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN; region: --region, else AWS_REGION or AWS_DEFAULT_REGION.`

// contextFlag is a repeatable --encryption-context K=V.
type contextFlag map[string]string

func (c contextFlag) String() string { return fmt.Sprint(map[string]string(c)) }
func (c contextFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", s)
	}
	if _, dup := c[k]; dup {
		return fmt.Errorf("key %q given twice", k)
	}
	c[k] = v
	return nil
}

func kmsCmd(args []string) (action, error) {
	if len(args) == 0 {
		return nil, usagef("%s", kmsUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("kms "+sub, flag.ContinueOnError)
	vendor := fs.String("vendor", "aws", "aws or huawei")
	project := fs.String("project-id", os.Getenv("HUAWEICLOUD_SDK_PROJECT_ID"), "huawei: the project ID")
	region := fs.String("region", firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"), "the KMS region")
	endpoint := fs.String("endpoint", "", "KMS endpoint URL (default: the region's)")
	keyFile := fs.String("recipient-key", "", "an RSA private key (PEM) to use instead of an ephemeral one")
	keyID := fs.String("key-id", "", "KMS key ID, ARN or alias")
	ciphertext := fs.String("ciphertext", "", "the ciphertext blob, standard base64")
	listen := fs.String("listen", "127.0.0.1:4000", "proxy: the loopback address to serve")
	n := fs.Int("bytes", 0, "how many bytes (data key: default 32, AES-256; random: default 32)")
	pairSpec := fs.String("key-pair-spec", "ECC_NIST_P256", "the data key pair's kind")
	encCtx := contextFlag{}
	fs.Var(encCtx, "encryption-context", "K=V (repeatable)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return nil, err
	}
	if len(pos) != 0 {
		return nil, usagef("kms %s: unexpected argument %q", sub, pos[0])
	}
	switch {
	case *vendor == "huawei" && (sub == "generate-data-key-pair" || sub == "proxy"):
		return nil, fmt.Errorf("kms: --vendor huawei: %s is AWS's (Huawei's recipient flow covers %s)", sub, kms.HuaweiOps)
	case *vendor == "huawei" && *project == "":
		return nil, usagef("kms: --vendor huawei needs --project-id or HUAWEICLOUD_SDK_PROJECT_ID")
	case *vendor != "aws" && *vendor != "huawei":
		return nil, usagef("kms: --vendor %q: want aws or huawei", *vendor)
	case *region == "" && *endpoint == "":
		return nil, usagef("kms: no region: --region, AWS_REGION or AWS_DEFAULT_REGION (or --endpoint)")
	case *n < 0 || *n > 1024:
		return nil, usagef("kms: --bytes %d outside 1..1024", *n)
	}
	var blob []byte
	switch sub {
	case "decrypt":
		if blob, err = base64.StdEncoding.DecodeString(*ciphertext); err != nil || len(blob) == 0 {
			return nil, usagef("kms decrypt: --ciphertext: want standard base64 of the ciphertext blob")
		}
	case "generate-data-key", "generate-data-key-pair":
		if *keyID == "" {
			return nil, usagef("kms %s: --key-id is required", sub)
		}
	case "generate-random":
	case "proxy":
		if h, _, err := net.SplitHostPort(*listen); err != nil || !(h == "127.0.0.1" || h == "::1" || h == "localhost") {
			return nil, usagef("kms proxy: --listen %q: want a loopback address", *listen)
		}
	default:
		return nil, usagef("kms: unknown command %q\n%s", sub, kmsUsage)
	}
	var key *rsa.PrivateKey
	if *keyFile != "" {
		if key, err = readRSAKey(*keyFile); err != nil {
			return nil, err
		}
	}
	return func(e *env) error {
		rec, err := kms.NewRecipient(e.m, key)
		if err != nil {
			return fmt.Errorf("kms %s: %w", sub, err)
		}
		var c kms.Client
		if *vendor == "huawei" {
			if c, err = huaweiClient(*endpoint, *region, *project, rec); err != nil {
				return err
			}
		} else {
			creds, err := awsCredentials(e.ctx, *region)
			if err != nil {
				return fmt.Errorf("kms %s: %w", sub, err)
			}
			a := &kms.AWS{Client: kms.NewAWSClient(*region, *endpoint, credentials.StaticCredentialsProvider{Value: creds}), Recipient: rec}
			if sub == "proxy" {
				return serveProxy(e, *listen, &kms.Proxy{KMS: a, Credentials: creds})
			}
			c = a
		}
		res, err := c.Do(e.ctx, kms.Request{Op: sub, KeyID: *keyID, Ciphertext: blob, EncryptionContext: encCtx, Bytes: *n, KeyPairSpec: *pairSpec})
		if err != nil {
			return fmt.Errorf("kms %s: %w", sub, err)
		}
		if e.json {
			out := map[string][]byte{"plaintext": res.Plaintext}
			if res.CiphertextBlob != nil {
				name := "ciphertext_blob"
				if sub == kms.OpGenerateDataKeyPair {
					name = "private_key_ciphertext_blob"
				}
				out[name] = res.CiphertextBlob
			}
			if res.PublicKey != nil {
				out["public_key"] = res.PublicKey
			}
			return e.printJSON(out)
		}
		_, err = fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(res.Plaintext))
		return err
	}, nil
}

// huaweiClient is Huawei KMS with the credentials of Huawei's SDK
// environment variables.
func huaweiClient(endpoint, region, project string, rec *kms.Recipient) (*kms.Huawei, error) {
	ak, sk := os.Getenv("HUAWEICLOUD_SDK_AK"), os.Getenv("HUAWEICLOUD_SDK_SK")
	if ak == "" || sk == "" {
		return nil, errors.New("kms: no Huawei Cloud credentials in the environment (HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK)")
	}
	if endpoint == "" {
		endpoint = kms.HuaweiEndpoint(region)
	}
	return &kms.Huawei{Endpoint: endpoint, ProjectID: project, AK: ak, SK: sk, SecurityToken: os.Getenv("HUAWEICLOUD_SDK_SECURITY_TOKEN"), Recipient: rec}, nil
}

// serveProxy serves the KMS proxy until SIGTERM or SIGINT.
func serveProxy(e *env, listen string, p *kms.Proxy) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("kms proxy: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.WithoutCancel(e.ctx), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "qtsm: "+format+"\n", args...) }
	hs := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	context.AfterFunc(ctx, func() { hs.Close() })
	fmt.Fprintf(e.stdout, "qtsm: kms proxy on http://%s (AWS_ENDPOINT_URL_KMS)\n", l.Addr())
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// awsCredentials are AWS's environment variables, else what the AWS
// credential chain finds (shared files, web identity, the instance's role
// through IMDS, which the enclave reaches through egress when its policy
// allows 169.254.169.254:80).
func awsCredentials(ctx context.Context, region string) (aws.Credentials, error) {
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN")}, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err == nil && cfg.Credentials != nil {
		var c aws.Credentials
		if c, err = cfg.Credentials.Retrieve(ctx); err == nil {
			return c, nil
		}
	}
	return aws.Credentials{}, fmt.Errorf("no AWS credentials: not in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), nor from the credential chain: %v", err)
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// readRSAKey reads an RSA private key in PEM (PKCS#1 or PKCS#8).
func readRSAKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kms: --recipient-key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("kms: --recipient-key %s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("kms: --recipient-key %s: %v", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("kms: --recipient-key %s: not an RSA key", path)
	}
	return rk, nil
}
