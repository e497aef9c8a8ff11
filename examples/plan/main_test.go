package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

func TestPlan(t *testing.T) {
	var out bytes.Buffer
	lesson := filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "frr-ospf")
	if err := run([]string{lesson}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"r3        eth2       eth2", "10.13.0.3/24", "ek-frr-ospf.r2", "r2.eth2 10.23.0.2/24  ↔  r3.eth1 10.23.0.3/24"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(nil, &out); err == nil {
		t.Error("run without a lesson succeeded")
	}
}
