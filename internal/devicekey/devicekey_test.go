package devicekey

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

var cheap = Params{Time: 1, MemoryKiB: 256, Threads: 1}

func TestCreateUnlockChange(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	dek, err := Create(dir, "1234", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if len(dek) != KeySize {
		t.Fatalf("key of %d bytes", len(dek))
	}
	if _, err := Create(dir, "5555", cheap); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a second Create: %v", err)
	}
	got, err := Unlock(dir, "1234", now)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unlock: %v", err)
	}
	if _, err := Unlock(dir, "4321", now); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
		t.Fatalf("wrong PIN: %v", err)
	}
	if err := ChangePIN(dir, "1234", "abcd", now); err != nil {
		t.Fatal(err)
	}
	if got, err := Unlock(dir, "abcd", now); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unlock with the new PIN: %v", err)
	}
	if _, err := Unlock(dir, "1234", now); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
		t.Fatalf("old PIN: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, FileName))
	if bytes.Contains(raw, dek) || bytes.Contains(raw, []byte("abcd")) {
		t.Fatal("the key file holds the key or the PIN in the clear")
	}
}

func TestCheckPIN(t *testing.T) {
	for pin, ok := range map[string]bool{"": false, "123": false, "1234": true, "ñññ1": true, string(make([]byte, 257)): false} {
		if err := CheckPIN(pin); (err == nil) != ok {
			t.Errorf("CheckPIN(%q) = %v", pin, err)
		}
	}
	if _, err := Create(t.TempDir(), "12", cheap); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
		t.Fatalf("short PIN: %v", err)
	}
}

func TestDelays(t *testing.T) {
	want := map[int]time.Duration{0: 0, 1: 0, 2: 0, 3: 30 * time.Second, 4: time.Minute, 5: 2 * time.Minute, 15: 24 * time.Hour, 1000: 24 * time.Hour}
	for n, d := range want {
		if got := delayAfter(n); got != d {
			t.Errorf("delayAfter(%d) = %s, want %s", n, got, d)
		}
	}
}

// The count survives a restart: it is in the file, not in memory.
func TestAttemptsPersist(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	if _, err := Create(dir, "1234", cheap); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		Unlock(dir, "0000", now)
	}
	f, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Failed != 3 || f.Wait(now) != 30*time.Second {
		t.Fatalf("after 3 wrong PINs: failed %d, wait %s", f.Failed, f.Wait(now))
	}
	if _, err := Unlock(dir, "1234", now.Add(29*time.Second)); fieldsync.ErrorCode(err) != fieldsync.ELocked {
		t.Fatalf("during the wait: %v", err)
	}
	if _, err := Unlock(dir, "1234", now.Add(30*time.Second)); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	if f, _ := Read(dir); f.Failed != 0 || f.NextAttempt != 0 {
		t.Fatalf("after the right PIN: %+v", f)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir, "1234", cheap); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, FileName))
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]string{
		"empty":       "",
		"not json":    "{",
		"trailing":    string(good) + "{}",
		"version":     string(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1)),
		"huge memory": string(bytes.Replace(good, []byte(`"m_kib": 256`), []byte(`"m_kib": 99999999`), 1)),
		"unknown":     `{"version":1,"extra":true}`,
		"short salt":  `{"version":1,"kdf":"argon2id","params":{"t":1,"m_kib":256,"p":1},"salt":"AAAA"}`,
		"negative":    string(bytes.Replace(good, []byte(`"failed": 0`), []byte(`"failed": -1`), 1)),
	} {
		if _, err := Decode([]byte(b)); fieldsync.ErrorCode(err) != fieldsync.EInternal {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	dir := f.TempDir()
	if _, err := Create(dir, "1234", cheap); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, FileName))
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Decode(b)
		if err != nil {
			if fieldsync.ErrorCode(err) != fieldsync.EInternal {
				t.Fatalf("error without the code: %v", err)
			}
			return
		}
		if !k.Params.valid() || len(k.Nonce) != 24 || len(k.WrappedKey) != KeySize+16 || k.Failed < 0 {
			t.Fatalf("accepted %+v", k)
		}
		_ = k.Wait(time.Unix(0, 0))
	})
}

// BenchmarkUnlock times Unlock at the default costs: the key derivation
// and the two synced writes of the attempt counter.
func BenchmarkUnlock(b *testing.B) {
	dir := b.TempDir()
	if _, err := Create(dir, "2468", DefaultParams); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for b.Loop() {
		if _, err := Unlock(dir, "2468", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDerive times the Argon2id derivation alone at the default
// costs.
func BenchmarkDerive(b *testing.B) {
	f := &File{Version: version, KDF: kdfName, Params: DefaultParams, Salt: make([]byte, saltSize)}
	for b.Loop() {
		f.kek("2468")
	}
}
