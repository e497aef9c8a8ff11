package qemulaunch

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
)

// getenv serves a rendered environment to ParseLaunch.
func getenv(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// Every ENDPOINT_* variable is read, and a flag wins over its variable.
func TestParseLaunchEnv(t *testing.T) {
	t.Setenv("ENDPOINT_FORWARD", "22,830")
	t.Setenv("ENDPOINT_STITCH", "bridge")
	t.Setenv("ENDPOINT_GRACE", "5s")
	l, err := ParseLaunch([]string{"--stitch", "mirred"}, os.Getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if FormatPorts(l.Forwards) != "22,830" || l.Stitch != "mirred" || l.Grace != 5*time.Second {
		t.Errorf("launch %+v: env not applied or flag did not win", l)
	}
	for env, want := range map[string]string{"ENDPOINT_INTERFACES=two": "ENDPOINT_INTERFACES", "ENDPOINT_GRACE=soon": "ENDPOINT_GRACE",
		"ENDPOINT_FORWARD=0": "--forward", "ENDPOINT_MACS=eth1=zz": "--macs"} {
		_, err := ParseLaunch(nil, getenv([]string{env}), io.Discard)
		if !errors.Is(err, ErrUsage) || ExitCode(err) != ExitCodeUsage || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a usage error naming %s", env, err, want)
		}
	}
	if _, err := ParseLaunch([]string{"--image", "x", "extra"}, getenv(nil), io.Discard); !errors.Is(err, ErrUsage) {
		t.Errorf("a stray argument: %v", err)
	}
}

// The launch of a model endpoint: the port policy (lesson ports first,
// then the image's), every MAC, the interface count; rendered and read
// back both ways.
func TestLaunchFor(t *testing.T) {
	im := tinyImage()
	im.Manifest.APIs = vmimage.APIs{SSH: 22, NETCONF: 830, HTTP: []int{443, 80}}
	ep := endpoint.Endpoint{Name: "r1", Ports: []int{8080, 22}, ManagementMAC: mac("02:aa:00:00:00:00"),
		Interfaces: []endpoint.Interface{{Name: "eth1", MAC: mac("02:aa:00:00:00:01")}}}
	l := LaunchFor(ep, im)
	if got := FormatPorts(l.Forwards); got != "8080,22,80,443,830" {
		t.Errorf("forwards %s; want the lesson's ports, then the image's ascending", got)
	}
	want := "run --image=/img/tiny --name=r1 --forward=8080,22,80,443,830 --interfaces=1 --macs=eth0=02:aa:00:00:00:00,eth1=02:aa:00:00:00:01"
	if got := strings.Join(l.Args(), " "); got != want {
		t.Errorf("args\n %s\nwant\n %s", got, want)
	}
	back, err := ParseLaunch(l.Args()[1:], getenv(nil), io.Discard)
	if err != nil || !reflect.DeepEqual(back, l) {
		t.Errorf("args read back as %+v (%v)", back, err)
	}
	if got := ExposedPorts(nil, im.Manifest); FormatPorts(got) != "22,80,443,830" {
		t.Errorf("image ports %s", FormatPorts(got))
	}
	c := FromEndpoint(ep, im)
	if !reflect.DeepEqual(c.Forwards, l.Forwards) {
		t.Errorf("FromEndpoint forwards %v, LaunchFor %v: two port policies", c.Forwards, l.Forwards)
	}
}

// parse(render(l)) == l, for the command line and for the environment.
func FuzzLaunchRoundTrip(f *testing.F) {
	f.Add("/img", "/lesson", "r1", "/run/ek/r1", "ek-x.r1", "tcg", "mirred", "22,830,161/udp,8022:22", "eth0=02:00:00:00:00:01,eth1=02:00:00:00:00:02", 2, int64(5*time.Second), true, "always", 3, true)
	f.Add("-x", "a b", "", "", "", "", "bridge", "", "", 0, int64(0), false, "", 0, false)
	f.Add("=", "--name", "\n", "é", "x=y", "kvm", "odd", "1", "e=02:00:00:00:00:03", 1, int64(1), false, "never", 1, false)
	f.Fuzz(func(t *testing.T, image, lesson, name, state, netns, accel, stitch, fwd, macs string, ifs int, grace int64, keep bool, restart string, maxRestarts int, keepState bool) {
		l := Launch{Image: image, Lesson: lesson, Name: name, State: state, Identity: netns + state, NetNS: netns, Accel: Accel(accel),
			Stitch: StitchMode(stitch), Interfaces: ifs, Grace: time.Duration(grace), KeepOverlay: keep,
			Restart: RestartPolicy(restart), MaxRestarts: maxRestarts, KeepState: keepState}
		if fs, err := ParsePorts(fwd); err == nil && len(fs) > 0 {
			l.Forwards = fs
		}
		if ms, err := parseMACs(macs); err == nil && len(ms) > 0 {
			l.MACs = ms
		}
		if l.Validate() != nil {
			return
		}
		fromArgs, err := ParseLaunch(l.Args()[1:], getenv(nil), io.Discard)
		if err != nil || !reflect.DeepEqual(fromArgs, l) {
			t.Fatalf("args %q read back as %+v (%v); want %+v", l.Args(), fromArgs, err, l)
		}
		fromEnv, err := ParseLaunch(nil, getenv(l.Env()), io.Discard)
		if err != nil || !reflect.DeepEqual(fromEnv, l) {
			t.Fatalf("env %q read back as %+v (%v); want %+v", l.Env(), fromEnv, err, l)
		}
	})
}

// Validate refuses what cannot be read back.
func TestLaunchValidate(t *testing.T) {
	for name, l := range map[string]Launch{
		"nul":        {Image: "a\x00b"},
		"auto port":  {Forwards: []Forward{{Proto: "tcp", HostPort: AutoPort, GuestPort: 22}}},
		"no proto":   {Forwards: []Forward{{HostPort: 22, GuestPort: 22}}},
		"negative":   {Interfaces: -1},
		"mac name":   {MACs: []InterfaceMAC{{"eth 1", mac("02:00:00:00:00:01")}}},
		"multicast":  {MACs: []InterfaceMAC{{"eth1", mac("01:00:00:00:00:01")}}},
		"short mac":  {MACs: []InterfaceMAC{{"eth1", net.HardwareAddr{2, 0}}}},
		"neg. grace": {Grace: -time.Second},
		"restart":    {Restart: "sometimes"},
		"neg. max":   {MaxRestarts: -1},
	} {
		if err := l.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v; want ErrConfig", name, err)
		}
	}
}

// --listen sets the address the forwards bind to (all of the namespace's
// for 0.0.0.0, as a pod needs for port forwards through its runtime); it
// must be IPv4.
func TestLaunchListen(t *testing.T) {
	dir := t.TempDir()
	m := tinyImage().Manifest
	if err := vmimage.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	l, err := ParseLaunch(nil, getenv(Launch{Image: dir, Name: "r1", Listen: "0.0.0.0"}.Env()), io.Discard)
	if err != nil || l.Listen != "0.0.0.0" {
		t.Fatalf("ParseLaunch: %+v, %v", l, err)
	}
	cfg, err := l.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Management.Address; a.String() != "0.0.0.0" {
		t.Errorf("management address %v, want 0.0.0.0", a)
	}
	for _, bad := range []string{"::", "eth0", "10.0.0"} {
		if _, err := (Launch{Image: dir, Name: "r1", Listen: bad}).Config(nil); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("--listen %q: %v, want a usage error", bad, err)
		}
	}
}
