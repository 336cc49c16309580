package tenant

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the self-signed pair in a data directory.
const (
	selfSignedDir  = "tls"
	selfSignedCert = "self-signed.crt"
	selfSignedKey  = "self-signed.key"
)

// SelfSigned returns the self-signed certificate kept in DIR/tls/,
// making it (ECDSA P-256, valid ten years, for 127.0.0.1, ::1, localhost
// and hosts) when there is none or the kept one does not name every
// host. The key file is written with mode 0600, temp file then rename.
func SelfSigned(dir string, hosts []string) (tls.Certificate, error) {
	tdir := filepath.Join(dir, selfSignedDir)
	certPath, keyPath := filepath.Join(tdir, selfSignedCert), filepath.Join(tdir, selfSignedKey)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && coversHosts(c, hosts) {
		return c, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate in %s: %w", tdir, err)
	}
	certPEM, keyPEM, err := newSelfSigned(hosts, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// selfSignedNames are the names every self-signed certificate is for.
var selfSignedNames = []string{"127.0.0.1", "::1", "localhost"}

func coversHosts(c tls.Certificate, hosts []string) bool {
	if len(c.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || time.Now().After(leaf.NotAfter) {
		return false
	}
	for _, h := range append(slices.Clone(selfSignedNames), hosts...) {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// newSelfSigned makes a self-signed certificate and its key, in PEM.
func newSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fieldsync server (self-signed)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range append(slices.Clone(selfSignedNames), hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Fingerprint is the SHA-256 of a certificate's DER bytes in lower-case
// hex, colon-separated pairs, as devices pin it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := hex.EncodeToString(sum[:])
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// PinnedVerifier returns a tls.Config.VerifyPeerCertificate that accepts
// exactly the certificate whose Fingerprint is fp (colons and case are
// forgiven). Use it with InsecureSkipVerify: the pin replaces the
// authority check.
func PinnedVerifier(fp string) func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	want := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("the server presented no certificate")
		}
		got := strings.ReplaceAll(Fingerprint(rawCerts[0]), ":", "")
		if got != want {
			return fmt.Errorf("the server's certificate (SHA-256 %s) is not the pinned one", Fingerprint(rawCerts[0]))
		}
		return nil
	}
}

// writeFileAtomic writes data to path durably: temp file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
