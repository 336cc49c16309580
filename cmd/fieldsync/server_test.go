package main

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/tenant"
)

// TestServerModes checks how fieldsync server refuses to run unsafely:
// one database without authentication only when asked for, and no
// cleartext tokens off loopback.
func TestServerModes(t *testing.T) {
	clearEnv(t)
	msg := cliErr(t, "server", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "s.db"))
	contains(t, "--db without --no-auth", msg, "--no-auth")
	msg = cliErr(t, "server", "--addr", "0.0.0.0:0", "--data", t.TempDir())
	contains(t, "cleartext off loopback", msg, "tokens would travel in clear", "--tls-self-signed")
	msg = cliErr(t, "server", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--tls-cert", "x.pem")
	contains(t, "a certificate without its key", msg, "--tls-key")
}

// TestServerSelfSignedTLS runs fieldsync server with a self-signed
// certificate: it prints the fingerprint and an https URL, keeps the
// certificate across runs, answers a client that pins it, and asks every
// /v1 request for a token.
func TestServerSelfSignedTLS(t *testing.T) {
	clearEnv(t)
	data := t.TempDir()
	fpRE := regexp.MustCompile(`fingerprint: ([0-9a-f:]{95})`)
	urlRE := regexp.MustCompile(`listening on (https://\S+)`)
	b := startCommand(t, "server", "--addr", "127.0.0.1:0", "--data", data, "--tls-self-signed", "--tls-host", "sync.test", "--log-level", "warn")
	url := b.waitOutput(urlRE)[1]
	fp := fpRE.FindStringSubmatch(b.stdout.String())
	if fp == nil {
		t.Fatalf("no fingerprint printed:\n%s", b.stdout.String())
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, VerifyPeerCertificate: tenant.PinnedVerifier(fp[1]), MinVersion: tls.VersionTLS12,
	}}}
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("pinned client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	resp, err = c.Get(url + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("/v1/info without a token: %d %v", resp.StatusCode, resp.Header)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	again := startCommand(t, "server", "--addr", "127.0.0.1:0", "--data", data, "--tls-self-signed", "--tls-host", "sync.test", "--log-level", "warn")
	again.waitOutput(urlRE)
	if fp2 := fpRE.FindStringSubmatch(again.stdout.String()); fp2 == nil || fp2[1] != fp[1] {
		t.Fatalf("the certificate changed between runs: %v, then %v", fp[1], fp2)
	}
	if err := again.stop(); err != nil {
		t.Fatal(err)
	}
}
