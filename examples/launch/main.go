// Command launch boots one endpoint VM from a built image directory with
// package qemulaunch, waits until it is ready, logs in over SSH (verifying
// the host keys the image was built with) to run `uname -a`, and powers it
// off.
//
//	go run ./examples/launch IMAGE_DIR    # e.g. built by `imagebuild build`
//
// The VM runs in this process's network namespace with its SSH port
// forwarded to a free port on 127.0.0.1 and no data interfaces.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: launch IMAGE_DIR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(1)
	}
}

// run boots the image in dir, runs one command over SSH and stops the VM.
func run(ctx context.Context, dir string, w io.Writer) error {
	im, err := vmimage.Load(dir)
	if err != nil {
		return err
	}
	state, err := os.MkdirTemp("", "launch-example")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	vm, err := qemulaunch.Start(ctx, qemulaunch.Config{
		Name: "example", Image: im, StateDir: state,
		Management: qemulaunch.Management{Address: netip.MustParseAddr("127.0.0.1")},
		Forwards:   []qemulaunch.Forward{{GuestPort: 22, HostPort: qemulaunch.AutoPort}},
	})
	if err != nil {
		return err
	}
	defer vm.Stop(context.Background()) // graceful poweroff, then quit, then kill
	t0 := time.Now()
	if err := vm.Ready(ctx); err != nil { // QMP, serial marker, SSH handshake
		return fmt.Errorf("%w\n%s", err, vm.Console().Tail(2000))
	}
	fmt.Fprintf(w, "ready in %.1fs (%s)\n", time.Since(t0).Seconds(), vm.Plan().Accel)

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.Forwards()[0].HostPort))
	client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            im.Manifest.Users.SSHUser,
		Auth:            []ssh.AuthMethod{ssh.Password(im.Manifest.Users.SSHPassword)},
		HostKeyCallback: qemulaunch.HostKeyCallback(im.Manifest.HostKeys),
		Timeout:         30 * time.Second,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.Output("uname -a")
	fmt.Fprintf(w, "%s: %s", im.Manifest.Slug, out)
	return err
}
