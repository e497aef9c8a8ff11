package endpointkit

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary instance records to Open: it must return an
// instance or an error, never panic, and an instance it returns must carry
// a valid name and the directory it was opened from.
func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"version":1,"instance":"linux-triangle","lesson":"linux-triangle","stage":0,"endpoints":[{"name":"r1","address":"10.77.0.2","pid":42,"state":"configured","stage":0}]}`))
	f.Add([]byte(`{"version":1,"instance":"../../etc"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"endpoints":[{"address":"not an address"}]}`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		if err := os.WriteFile(filepath.Join(dir, StateFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		inst, err := Open(dir, Options{})
		if err != nil {
			return
		}
		if inst.Dir != dir || inst.Version != stateVersion || inst.Name == "" {
			t.Fatalf("Open accepted %q as %+v", raw, inst)
		}
	})
}
