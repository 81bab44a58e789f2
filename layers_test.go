package outbox_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The layers hold: nothing under internal/ and no leaf package imports the
// root or a product package built on it, so the delivery engine never climbs
// back up and the nested modules import a settled API. Checked on the real
// import graph (go list -deps), test files excluded.
func TestLayers(t *testing.T) {
	t.Parallel()
	const mod = "github.com/outboxkit/outbox"
	// Products: packages built on an outbox handle.
	products := map[string]bool{mod: true, mod + "/integrationlog": true, mod + "/securitylog": true}
	// Leaves: public packages that internal packages may import.
	leaves := []string{mod + "/webhook", mod + "/schema", mod + "/redact", mod + "/keys", mod + "/subconfig"}
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", "./internal/...", "./webhook", "./schema", "./redact", "./keys", "./subconfig")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		under := strings.HasPrefix(p.ImportPath, mod+"/internal/")
		for _, l := range leaves {
			under = under || p.ImportPath == l
		}
		if !under {
			continue
		}
		checked++
		for _, d := range p.Deps {
			if products[d] {
				t.Errorf("%s imports %s", p.ImportPath, d)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages", checked)
	}
}
