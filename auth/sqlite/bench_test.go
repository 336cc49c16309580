package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/auth/sqlite"
)

// BenchmarkAuthenticate is what every API request pays: one token
// lookup in the identity store (the last-seen write is once a minute).
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "identity.db"), sqlite.Config{PasswordParams: cheap, CodeParams: cheap})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.CreateOrg(ctx, "acme")
	s.CreateUser(ctx, "acme", "ana", auth.RoleFieldWorker, "")
	e, _ := s.IssueEnrolment(ctx, "acme", "ana", "bench")
	iss, err := s.Enroll(ctx, e.Code, "tablet", "")
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authenticate(ctx, iss.Token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
