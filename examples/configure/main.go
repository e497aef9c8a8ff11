// Command configure runs a shell script on a host over SSH with package
// configure — the "ssh" configuration method lesson stages use — and prints
// what each command did.
//
//	SSH_PASSWORD=… go run ./examples/configure -addr HOST:PORT -user USER \
//	    -known-hosts FILE SCRIPT
//
// The host key is checked against the known_hosts file (-insecure skips
// the check: only for throw-away hosts).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Getenv("SSH_PASSWORD"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "configure:", err)
		os.Exit(1)
	}
}

// run parses the flags and configures the one host.
func run(ctx context.Context, args []string, password string, w io.Writer) error {
	fs := flag.NewFlagSet("configure", flag.ContinueOnError)
	addr := fs.String("addr", "", "HOST:PORT of the SSH server")
	user := fs.String("user", "", "login name")
	knownHosts := fs.String("known-hosts", "", "known_hosts file with the host's key")
	insecure := fs.Bool("insecure", false, "accept any host key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, portS, err := net.SplitHostPort(*addr)
	if err != nil || fs.NArg() != 1 || *user == "" {
		return fmt.Errorf("usage: configure -addr HOST:PORT -user USER [-known-hosts FILE | -insecure] SCRIPT")
	}
	port, _ := strconv.Atoi(portS)
	script, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	t := configure.Target{
		Name: host, Address: host, Port: port, User: *user, Password: configure.Secret(password),
		HostKeys:  configure.HostKeyPolicy{KnownHostsFile: *knownHosts, InsecureIgnore: *insecure},
		LessonDir: filepath.Dir(script),
		// One stage: run SCRIPT over SSH (set -e; each command's status).
		Stages: []endpoint.StageConfig{{Stage: 0, Method: endpoint.MethodSSH, File: script}},
	}
	res := configure.Run(ctx, 0, []configure.Target{t}, configure.Options{})[0]
	for _, s := range res.Steps {
		fmt.Fprintf(w, "line %d: %s (status %d)\n", s.Line, s.Name, s.Status)
		if out := strings.TrimRight(s.Output, "\n"); out != "" {
			fmt.Fprintln(w, "  "+strings.ReplaceAll(out, "\n", "\n  "))
		}
	}
	if res.Err != nil {
		return res.Err
	}
	fmt.Fprintf(w, "%s configured in %.2fs\n", host, res.Duration.Seconds())
	return nil
}
