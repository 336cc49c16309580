package selftest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// setupTitle says what the setup check does in the run's mode.
func (r *run) setupTitle() string {
	switch r.mode {
	case modeOperator:
		return "test organisation made, devices enrolled with one-time codes"
	case modeOffice:
		return "devices enrolled with one-time codes from the office"
	}
	return "device engines opened"
}

// checkSetup opens the device engines: the main one, the attachment
// check's, and — in an organisation — enrols them and the hand-pushing
// device through POST /v1/enroll, making the test organisation first
// with the operator token.
func (r *run) checkSetup(ctx context.Context) (Outcome, string) {
	if r.mode == modeOpen {
		r.eng, r.engErr = r.openEngine(ctx, "device", r.hc)
		if r.engErr != nil {
			return failf("device engine: %s", fieldsync.ErrorMessage(r.engErr))
		}
		var err error
		if r.attach, err = r.openEngine(ctx, "attach", r.hc); err != nil {
			return failf("second device engine: %s", fieldsync.ErrorMessage(err))
		}
		if r.cfg.Token != "" {
			return Pass, "one shared token on every request"
		}
		return Pass, "no token: the server asks for none"
	}
	code := ""
	detail := ""
	if r.mode == modeOperator {
		t, err := r.createTestOrg(ctx)
		if err != nil {
			return failf("%v", err)
		}
		r.org, r.created, r.worker, code = t.Org, true, t.Worker, t.EnrolmentCode
		r.hc = withToken(r.cfg.HTTPClient, t.OfficeToken)
		detail = fmt.Sprintf("%s, until %s; ", t.Org, t.Expires.Local().Format("15:04"))
	}
	var err error
	if r.eng, err = r.enrolEngine(ctx, "device", code); err != nil {
		return failf("device: %s", fieldsync.ErrorMessage(err))
	}
	if r.attach, err = r.enrolEngine(ctx, "attach", ""); err != nil {
		return failf("second device: %s", fieldsync.ErrorMessage(err))
	}
	tok, err := r.enrolRaw(ctx)
	if err != nil {
		return failf("device for hand-made pushes: %v", err)
	}
	r.devHC = withToken(r.cfg.HTTPClient, tok)
	return Pass, detail + fmt.Sprintf("3 devices of %s enrolled", r.worker)
}

// openEngine opens a device engine in the run's folder.
func (r *run) openEngine(ctx context.Context, name string, hc *http.Client) (*client.Engine, error) {
	return client.Open(ctx, client.Config{Dir: filepath.Join(r.dir, name), ServerURL: r.base, HTTPClient: hc, MinBackoff: 10 * time.Millisecond})
}

// enrolEngine opens a device engine and enrols it with code, or with a
// code asked of the office when code is empty.
func (r *run) enrolEngine(ctx context.Context, name, code string) (*client.Engine, error) {
	if code == "" {
		var err error
		if code, err = r.enrolmentCode(ctx); err != nil {
			return nil, err
		}
	}
	eng, err := r.openEngine(ctx, name, r.plain)
	if err != nil {
		return nil, err
	}
	if err := eng.Enroll(ctx, code, "selftest "+name+" "+r.tag); err != nil {
		eng.Close()
		return nil, fmt.Errorf("enrol: %w", err)
	}
	return eng, nil
}

// enrolmentCode asks the office for a one-time code for a device of the
// worker (POST /v1/enrolments).
func (r *run) enrolmentCode(ctx context.Context) (string, error) {
	a, err := r.do(ctx, http.MethodPost, protocol.PathEnrolments, thisVersion, protocol.EnrolmentRequest{User: r.worker})
	if err != nil {
		return "", err
	}
	var e protocol.EnrolmentResponse
	if a.status != http.StatusOK || json.Unmarshal(a.body, &e) != nil || e.Code == "" {
		return "", fmt.Errorf("enrolment code for %s: %s", r.worker, a.apiError())
	}
	return e.Code, nil
}

// enrolRaw enrols the device whose ops the selftest pushes by hand, as
// a device would (POST /v1/enroll), and returns its token.
func (r *run) enrolRaw(ctx context.Context) (string, error) {
	code, err := r.enrolmentCode(ctx)
	if err != nil {
		return "", err
	}
	a, err := r.doWith(ctx, r.plain, http.MethodPost, protocol.PathEnroll, "",
		protocol.EnrollRequest{Code: code, DeviceName: "selftest pushes " + r.tag, Device: r.rawDev})
	if err != nil {
		return "", err
	}
	var e protocol.EnrollResponse
	if a.status != http.StatusOK || json.Unmarshal(a.body, &e) != nil || e.Token == "" {
		return "", fmt.Errorf("enrol: %s", a.apiError())
	}
	return e.Token, nil
}

// createTestOrg asks the operator API for a test organisation.
func (r *run) createTestOrg(ctx context.Context) (*protocol.TestOrgResponse, error) {
	ttl := int64(r.cfg.TestOrgTTL / time.Second)
	a, err := r.doWith(ctx, r.opHC, http.MethodPost, protocol.PathTestOrgs, "", protocol.TestOrgRequest{TTLSeconds: max(ttl, 1)})
	if err != nil {
		return nil, err
	}
	var t protocol.TestOrgResponse
	if a.status != http.StatusOK {
		if a.status == http.StatusNotFound {
			return nil, fmt.Errorf("this server has no operator API (%s): it may run without authentication, or an older build", a.apiError())
		}
		return nil, fmt.Errorf("making a test organisation: %s", a.apiError())
	}
	if err := json.Unmarshal(a.body, &t); err != nil || t.Org == "" || t.OfficeToken == "" || t.EnrolmentCode == "" {
		return nil, fmt.Errorf("making a test organisation: the answer is not the expected JSON: %s", truncate(string(a.body), 120))
	}
	return &t, nil
}

// checkAuth checks that the server refuses what it should: a request
// without a token (401) and, in an organisation, a device's office edit
// (403) and the office's token on the operator API (403).
func (r *run) checkAuth(ctx context.Context) (Outcome, string) {
	a, err := r.doWith(ctx, r.plain, http.MethodGet, protocol.PathInfo, thisVersion, nil)
	if err != nil {
		return failf("%v", err)
	}
	code := protocol.DecodeErrorBody(a.status, a.body).Code
	if r.mode == modeOpen {
		if a.status == http.StatusOK {
			return Skip, "the server serves requests without a token (no authentication: development only)"
		}
		if a.status != http.StatusUnauthorized {
			return failf("a request without a token answered %s, want 401", a.apiError())
		}
		return Pass, "no token: 401 " + string(code)
	}
	if a.status != http.StatusUnauthorized || code != fieldsync.ETokenMissing {
		return failf("a request without a token answered %s, want 401 %s", a.apiError(), fieldsync.ETokenMissing)
	}
	if r.devHC == nil || r.engErr != nil {
		return Pass, "no token: 401 " + string(code) + " (the rest needs the setup)"
	}
	a, err = r.doWith(ctx, r.devHC, http.MethodPatch, protocol.PathRecords+EntityType+"/selftest-none-"+r.tag, thisVersion,
		protocol.EditRequest{Base: 1, Fields: map[string]json.RawMessage{"title": jsonString("x")}})
	if err != nil {
		return failf("%v", err)
	}
	if a.status != http.StatusForbidden {
		return failf("a field worker's device made an office edit: %s, want 403 %s", a.apiError(), fieldsync.EForbidden)
	}
	detail := "no token: 401; a device's office edit: 403"
	if r.mode == modeOperator {
		a, err = r.do(ctx, http.MethodPost, protocol.PathTestOrgs, "", protocol.TestOrgRequest{})
		if err != nil {
			return failf("%v", err)
		}
		if a.status != http.StatusForbidden {
			return failf("the test organisation's dispatcher token on the operator API answered %s, want 403 %s", a.apiError(), fieldsync.EForbidden)
		}
		detail += "; an organisation's token on the operator API: 403"
	}
	return Pass, detail
}

// cleanup undoes what the selftest made: the whole test organisation in
// the operator mode (then its tokens must be refused), else every record.
func (r *run) cleanup(ctx context.Context) (string, Outcome, string) {
	if r.mode != modeOperator {
		out, detail := r.cleanupRecords(ctx)
		return "selftest records deleted", out, detail
	}
	const title = "test organisation deleted"
	if !r.created {
		return title, Pass, "none was made"
	}
	a, err := r.doWith(ctx, r.opHC, http.MethodDelete, protocol.PathTestOrgs+"/"+url.PathEscape(r.org), "", nil)
	if err != nil {
		return title, Fail, fmt.Sprintf("%v: the server removes %s by itself when it expires", err, r.org)
	}
	if a.status != http.StatusOK {
		return title, Fail, fmt.Sprintf("DELETE %s: %s; the server removes it by itself when it expires", r.org, a.apiError())
	}
	r.created = false
	a, err = r.do(ctx, http.MethodGet, protocol.PathInfo, thisVersion, nil)
	if err != nil {
		return title, Fail, fmt.Sprintf("%s deleted, but checking its token: %v", r.org, err)
	}
	if a.status != http.StatusUnauthorized {
		return title, Fail, fmt.Sprintf("%s deleted, but its dispatcher token still answers %s, want 401", r.org, a.apiError())
	}
	return title, Pass, fmt.Sprintf("%s and everything in it deleted; its tokens refused", r.org)
}
