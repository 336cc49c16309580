package fieldsync_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type goPackage struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
	Standard   bool
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []goPackage
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

const module = "github.com/fieldsync/fieldsync"

// TestImportsPointInward keeps the layout honest: the domain imports only
// the standard library, the wire format only the domain, and neither the
// server nor the device engine picks a database driver.
func TestImportsPointInward(t *testing.T) {
	drivers := []string{"github.com/ncruces/go-sqlite3", "github.com/jackc/pgx", "modernc.org/sqlite"}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		switch rel {
		case "":
			for _, imp := range p.Imports {
				if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					t.Errorf("the root package imports %s: it may import only the standard library", imp)
				}
			}
		case "protocol":
			for _, imp := range p.Imports {
				if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && imp != module {
					t.Errorf("protocol imports %s: it may import only the standard library and the root package", imp)
				}
			}
		case "server", "client", "schema":
			for _, dep := range p.Deps {
				for _, d := range drivers {
					if strings.HasPrefix(dep, d) && !(rel == "client" && strings.HasPrefix(dep, "github.com/ncruces/go-sqlite3")) {
						t.Errorf("%s depends on the driver %s: only cmd/, store/ and the device store pick drivers", rel, dep)
					}
				}
			}
		}
	}
}

// TestEveryPackageHasADoc requires a package comment everywhere.
func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package comment", p.ImportPath)
		}
	}
}
