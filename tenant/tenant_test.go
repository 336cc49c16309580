package tenant_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/tenant"
)

var cheap = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

func status(t *testing.T, method, url, token string, body any) int {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFrontRoutes checks the front's routes and that an organisation's
// store is opened only once one of its requests arrives, under
// DATA/orgs/<org>.db.
func TestFrontRoutes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	f, err := tenant.Open(ctx, tenant.Config{Dir: dir, Identity: authsqlite.Config{PasswordParams: cheap, CodeParams: cheap}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(f)
	defer ts.Close()
	ids := f.Identity()
	for _, org := range []string{"acme", "beta"} {
		if _, err := ids.CreateOrg(ctx, org); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ids.CreateUser(ctx, "acme", "ana", auth.RoleFieldWorker, ""); err != nil {
		t.Fatal(err)
	}
	code, err := ids.IssueEnrolment(ctx, "acme", "ana", "")
	if err != nil {
		t.Fatal(err)
	}
	if st := status(t, http.MethodGet, ts.URL+"/healthz", "", nil); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
	if st := status(t, http.MethodGet, ts.URL+"/nothing", "", nil); st != http.StatusNotFound {
		t.Fatalf("unknown path: %d", st)
	}
	if st := status(t, http.MethodGet, ts.URL+"/v1/info", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("info without a token: %d", st)
	}
	if _, err := os.Stat(tenant.OrgPath(dir, "acme")); !os.IsNotExist(err) {
		t.Fatalf("acme's store exists before any of its requests: %v", err)
	}
	req, _ := json.Marshal(protocol.EnrollRequest{Code: code.Code, DeviceName: "tablet", Device: "dev-1"})
	resp, err := http.Post(ts.URL+protocol.PathEnroll, "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	var en protocol.EnrollResponse
	if err := json.NewDecoder(resp.Body).Decode(&en); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enrol: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if st := status(t, http.MethodGet, ts.URL+"/v1/info", en.Token, nil); st != http.StatusOK {
		t.Fatalf("info with a device token: %d", st)
	}
	if _, err := os.Stat(tenant.OrgPath(dir, "acme")); err != nil {
		t.Fatalf("acme's store: %v", err)
	}
	if _, err := os.Stat(tenant.OrgPath(dir, "beta")); !os.IsNotExist(err) {
		t.Fatalf("beta's store was opened by acme's request: %v", err)
	}
	ts.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Org("acme"); err == nil {
		t.Fatal("an organisation opened after Close")
	}
}

// TestSelfSignedHosts checks that the kept certificate is made again
// when a host it must name is new, and names every host.
func TestSelfSignedHosts(t *testing.T) {
	dir := t.TempDir()
	first, err := tenant.SelfSigned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tenant.SelfSigned(dir, []string{"sync.example.lan", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatal("a certificate not naming a new host was kept")
	}
	leaf, err := x509.ParseCertificate(second.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "sync.example.lan", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if fp := tenant.Fingerprint(second.Certificate[0]); tenant.PinnedVerifier(fp)(second.Certificate, nil) != nil ||
		tenant.PinnedVerifier(fp)(first.Certificate, nil) == nil {
		t.Fatal("the pin does not tell the two certificates apart")
	}
}
