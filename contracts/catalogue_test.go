package contracts

import (
	"bytes"
	"os"
	"testing"
)

// TestCatalogue keeps docs/events.md equal to what the registry and the
// schemas generate; -update rewrites it.
func TestCatalogue(t *testing.T) {
	want, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		writeFile(t, CataloguePath, want)
	}
	got, err := os.ReadFile(CataloguePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run go generate in contracts/ (go test -run TestCatalogue -update)", CataloguePath)
	}
	for _, s := range Events {
		if !bytes.Contains(got, []byte("### "+s.Type+" v")) {
			t.Errorf("%s has no section for %s", CataloguePath, s.Type)
		}
	}
}
