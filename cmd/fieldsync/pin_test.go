package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPinEncryptsAndChanges(t *testing.T) {
	dir := t.TempDir()
	id, _ := create(t, dir, "title=Locked boiler room", "status=new")
	// The first command with a PIN encrypts the device.
	if out := mustCLI(t, "show", "--dir", dir, "--id", id, "--pin", "2468"); !strings.Contains(out, "Locked boiler room") {
		t.Fatalf("show with the PIN:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.json")); err != nil {
		t.Fatalf("no key file after opening with a PIN: %v", err)
	}
	if msg := cliErr(t, "show", "--dir", dir, "--id", id); !strings.Contains(msg, "pin_required") {
		t.Fatalf("show without a PIN: %s", msg)
	}
	if msg := cliErr(t, "list", "--dir", dir, "--pin", "1111"); !strings.Contains(msg, "wrong_pin") {
		t.Fatalf("list with a wrong PIN: %s", msg)
	}
	if msg := cliErr(t, "pin", "change", "--dir", dir, "--pin", "2468"); !strings.Contains(msg, "new") {
		t.Fatalf("pin change without a new PIN: %s", msg)
	}
	if out := mustCLI(t, "pin", "change", "--dir", dir, "--pin", "2468", "--new-pin", "13579"); !strings.Contains(out, "changed") {
		t.Fatalf("pin change:\n%s", out)
	}
	if msg := cliErr(t, "list", "--dir", dir, "--pin", "2468"); !strings.Contains(msg, "wrong_pin") {
		t.Fatalf("list with the old PIN: %s", msg)
	}
	t.Setenv("FIELDSYNC_PIN", "13579")
	if out := mustCLI(t, "show", "--dir", dir, "--id", id); !strings.Contains(out, "Locked boiler room") {
		t.Fatalf("show with the new PIN from the environment:\n%s", out)
	}
}
