package auth

import (
	"net/http"
	"testing"
)

// BenchmarkVerifyPassword is the cost of one login with the default
// parameters.
func BenchmarkVerifyPassword(b *testing.B) {
	h, err := HashPassword("a long enough password", DefaultPasswordParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		VerifyPassword("a long enough password", h)
	}
}

// BenchmarkHashEnrolmentCode is the cost of issuing or redeeming a code.
func BenchmarkHashEnrolmentCode(b *testing.B) {
	key := make([]byte, 32)
	for b.Loop() {
		HashEnrolmentCode("ABCDEFGHJK", key, DefaultCodeParams)
	}
}

// BenchmarkDecide is the cost of one access decision.
func BenchmarkDecide(b *testing.B) {
	p := Principal{Org: "acme", User: "ana", Role: RoleFieldWorker, DeviceID: "d1", TokenKind: TokenDevice}
	owned := func(f string) bool { return f == "assignee" }
	req := Request{Action: ActionPush, Org: "acme", DeviceID: "d1", RecordExists: true, RecordAssignee: "ana",
		Fields: []string{"title", "status"}, ServerOwned: owned}
	for b.Loop() {
		if !Decide(p, req).Allow {
			b.Fatal("refused")
		}
	}
}

// BenchmarkParseAuthorization is the cost of reading the header.
func BenchmarkParseAuthorization(b *testing.B) {
	h := http.Header{"Authorization": {"Bearer " + NewToken(TokenDevice)}}
	for b.Loop() {
		ParseAuthorization(h)
	}
}
