package configure_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
)

func ExampleSecret() {
	t := configure.Target{Name: "vqfx1", User: "antidote", Password: "antidotepassword"}
	fmt.Printf("%v\n", t.Password)
	fmt.Printf("%+v\n", t.Password)
	slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})).Info("target", "password", t.Password, "target", t)
	// Output:
	// REDACTED
	// REDACTED
	// level=INFO msg=target password=REDACTED target.name=vqfx1 target.addr=:22 target.user=antidote
}

func ExampleTargetFor() {
	ep := endpoint.Endpoint{
		Name:        "linux1",
		Credentials: endpoint.Credentials{SSHUser: "antidote", SSHPassword: "antidotepassword"},
		Stages:      []endpoint.StageConfig{{Stage: 0, Method: endpoint.MethodPython, File: "/lessons/x/stage0/configs/linux1.py"}},
	}
	// The launcher reports where the guest's SSH port is forwarded; the
	// image manifest pins its host keys.
	t := configure.TargetFor(ep, "/lessons/x", configure.Access{
		Address: "127.0.0.1", SSHPort: 40022,
		HostKeys: []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:…"}},
	})
	sc, _ := t.StageConfig(0)
	fmt.Println(t.Name, t.SSHAddr(), t.User, t.Password, sc.Method)
	// Output: linux1 127.0.0.1:40022 antidote REDACTED python
}

func ExampleJunosLoadRPC() {
	fmt.Println(configure.JunosLoadRPC("set system host-name vqfx1\n", false))
	fmt.Println(configure.JunosLoadRPC("system { host-name vqfx1; }\n", true))
	// Output:
	// <load-configuration action="set" format="text"><configuration-set>set system host-name vqfx1&#xA;</configuration-set></load-configuration>
	// <load-configuration action="override" format="text"><configuration-text>system { host-name vqfx1; }&#xA;</configuration-text></load-configuration>
}

// Configure stage 1 of a lesson's endpoints, waiting for each to answer
// SSH first (the deadlines scaled for guests running under TCG).
func ExampleRun() {
	var targets []configure.Target // from configure.TargetFor, one per endpoint
	results := configure.Run(context.Background(), 1, targets, configure.Options{
		Concurrency: 8,
		Timeout:     5 * time.Minute,
		Reach:       &configure.ReachOptions{Scale: 4},
		Progress: func(r configure.Result) {
			fmt.Printf("%s: ok=%v in %s\n", r.Endpoint, r.OK, r.Duration)
		},
	})
	for _, r := range results {
		if r.Err != nil {
			fmt.Println(r.Err) // names the endpoint, stage, method and file
		}
	}
}
