package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
)

// endpoint logs prints the rotated console log, then the current one, or
// their last lines.
func TestLogs(t *testing.T) {
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, "console.log.1"), []byte("boot 1\nboot 2\n"), 0o644)
	os.WriteFile(filepath.Join(state, "console.log"), []byte("boot 3\nlogin: "), 0o644)
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"logs", "--state", state}, nil, &out, &errb); err != nil {
		t.Fatalf("logs: %v\n%s", err, errb.String())
	}
	if out.String() != "boot 1\nboot 2\nboot 3\nlogin: " {
		t.Errorf("logs printed %q", out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"logs", "--state", state, "--lines", "2"}, nil, &out, &errb); err != nil || out.String() != "boot 3\nlogin: " {
		t.Errorf("logs --lines 2: %q %v", out.String(), err)
	}
	if err := Run(context.Background(), []string{"logs", "--state", t.TempDir()}, nil, &out, &errb); err == nil {
		t.Error("logs of a state directory without a console log: no error")
	}
}

// endpoint hostkeys prints the keys learned from the console as JSON, []
// before any were.
func TestHostKeys(t *testing.T) {
	state := t.TempDir()
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"hostkeys", "--state", state}, nil, &out, &errb); err != nil || out.String() != "[]\n" {
		t.Errorf("hostkeys before any were learned: %q %v %s", out.String(), err, errb.String())
	}
	learned := []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:x", PublicKey: "ssh-ed25519 AAAA"}}
	raw, _ := json.Marshal(learned)
	os.WriteFile(qemulaunch.StateDir(state).HostKeys(), raw, 0o644)
	out.Reset()
	if err := Run(context.Background(), []string{"hostkeys", "--state", state}, nil, &out, &errb); err != nil {
		t.Fatalf("hostkeys: %v\n%s", err, errb.String())
	}
	var got []vmimage.HostKey
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || !reflect.DeepEqual(got, learned) {
		t.Errorf("hostkeys printed %q (%v); want %+v", out.String(), err, learned)
	}
}

// endpoint remove-bridges deletes unused bridges by name, leaves a bridge
// still in use and anything that is not a bridge, and skips those gone.
func TestRemoveBridges(t *testing.T) {
	ns := ektest.NetNS(t)
	var out, errb bytes.Buffer
	var runErr error
	err := nsutil.Do(ns, func() error {
		for _, b := range []string{"ekbr0", "ekbr1"} {
			if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b}}); err != nil {
				return err
			}
		}
		br1, err := netlink.LinkByName("ekbr1")
		if err != nil {
			return err
		}
		// A veth pair: one end a port of ekbr1, the other not a bridge.
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ekport", MasterIndex: br1.Attrs().Index}, PeerName: "ekother"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		runErr = Run(context.Background(), []string{"remove-bridges", "ekbr0", "ekbr1", "ekother", "ekgone"}, nil, &out, &errb)
		for name, want := range map[string]bool{"ekbr0": false, "ekbr1": true, "ekother": true} {
			if _, lerr := netlink.LinkByName(name); (lerr == nil) != want {
				t.Errorf("%s present: %v, want %v", name, lerr == nil, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "ekbr1 still has 1 interfaces") || !strings.Contains(runErr.Error(), "ekother is a veth") {
		t.Errorf("remove-bridges: %v", runErr)
	}
	if !strings.Contains(out.String(), "ekbr0: removed") || !strings.Contains(out.String(), "ekgone: gone") {
		t.Errorf("remove-bridges printed %q", out.String())
	}
}
