package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"time"
)

// CA is a throwaway P-384 certificate chain shaped like the vendors': a
// root, one intermediate, and short-lived leaves whose keys sign documents.
type CA struct {
	RootDER         []byte
	IntermediateDER []byte

	rand      io.Reader
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	leafLabel string
}

// Leaf is a signing certificate and its key.
type Leaf struct {
	DER  []byte
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// LeafLifetime is how long a leaf certificate is valid, as on AWS (3 h).
const LeafLifetime = 3 * time.Hour

// NewCA creates a root (valid from a year before now for 30 years) and an
// intermediate (same span) with fresh P-384 keys. label names the chain in
// the certificates' subjects.
func NewCA(rnd io.Reader, now time.Time, label string) (*CA, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	ca := &CA{rand: rnd, leafLabel: label}
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rnd)
	if err != nil {
		return nil, fmt.Errorf("sim: root key: %w", err)
	}
	from, to := now.Add(-365*24*time.Hour), now.Add(30*365*24*time.Hour)
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"qtenclave simulator"}, CommonName: label + " root"},
		NotBefore:             from,
		NotAfter:              to,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ca.RootDER, ca.root, err = ca.create(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey); err != nil {
		return nil, fmt.Errorf("sim: root certificate: %w", err)
	}
	if ca.interKey, err = ecdsa.GenerateKey(elliptic.P384(), rnd); err != nil {
		return nil, fmt.Errorf("sim: intermediate key: %w", err)
	}
	interTmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"qtenclave simulator"}, CommonName: label + " intermediate"},
		NotBefore:             from,
		NotAfter:              to,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ca.IntermediateDER, ca.inter, err = ca.create(interTmpl, ca.root, &ca.interKey.PublicKey, rootKey); err != nil {
		return nil, fmt.Errorf("sim: intermediate certificate: %w", err)
	}
	return ca, nil
}

// Bundle returns the cabundle of a document: root first.
func (ca *CA) Bundle() [][]byte { return [][]byte{ca.RootDER, ca.IntermediateDER} }

// Root returns the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// NewLeaf issues a leaf certificate valid from a minute before now for
// LeafLifetime, with a fresh P-384 key.
func (ca *CA) NewLeaf(now time.Time) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), ca.rand)
	if err != nil {
		return nil, fmt.Errorf("sim: leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"qtenclave simulator"}, CommonName: ca.leafLabel},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(LeafLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, cert, err := ca.create(tmpl, ca.inter, &key.PublicKey, ca.interKey)
	if err != nil {
		return nil, fmt.Errorf("sim: leaf certificate: %w", err)
	}
	return &Leaf{DER: der, Cert: cert, Key: key}, nil
}

func (ca *CA) create(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(ca.rand, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
	der, err := x509.CreateCertificate(ca.rand, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return der, c, err
}
