// Package nsutil manages named network namespaces (the /run/netns files that
// `ip netns` uses) and runs code inside them safely.
//
// The rule this package exists to enforce: never switch the namespace of a
// goroutine that outlives the call. Go moves goroutines between OS threads and
// each thread has its own namespace, so a stray setns silently moves unrelated
// goroutines. Prefer a netlink handle bound to the namespace ([Handle]); when
// code must run inside (sockets, exec), use [Do], which locks a fresh thread,
// switches it, and lets the thread die if switching back fails.
package nsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted, as with `ip netns add`.
const Dir = "/run/netns"

// ErrExists is returned by [Create] when a namespace of that name exists.
var ErrExists = errors.New("network namespace already exists")

// ErrNotExist is returned when a named namespace does not exist.
var ErrNotExist = errors.New("network namespace does not exist")

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether a namespace named name is mounted.
func Exists(name string) bool {
	var st, pst unix.Stat_t
	if unix.Stat(Path(name), &st) != nil || unix.Stat(Dir, &pst) != nil {
		return false
	}
	// A mounted nsfs file lives on a different device than its directory.
	return st.Dev != pst.Dev
}

// Create makes a new, empty network namespace named name, mounted at
// Path(name). It fails with [ErrExists] if the name is taken.
func Create(name string) error {
	if err := ensureSharedDir(); err != nil {
		return err
	}
	p := Path(name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("netns %q: %w", name, ErrExists)
		}
		return fmt.Errorf("netns %q: %w", name, err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// This thread's namespace is changed and never restored: it stays
		// locked, so the runtime destroys it when the goroutine returns.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s: %w", p, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(p)
		return fmt.Errorf("netns %q: %w", name, err)
	}
	return nil
}

// Delete unmounts and removes the named namespace. Deleting a namespace that
// does not exist is not an error, so Delete can be used in teardown paths.
func Delete(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %q: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %q: %w", name, err)
	}
	return nil
}

// Open returns a handle (an open fd) to the named namespace; close it when done.
func Open(name string) (netns.NsHandle, error) {
	if !Exists(name) {
		return netns.None(), fmt.Errorf("netns %q: %w", name, ErrNotExist)
	}
	h, err := netns.GetFromPath(Path(name))
	if err != nil {
		return netns.None(), fmt.Errorf("netns %q: %w", name, err)
	}
	return h, nil
}

// Handle returns a netlink handle whose sockets live in the named namespace.
// No thread switches namespace; close the handle when done.
func Handle(name string) (*netlink.Handle, error) {
	ns, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink handle: %w", name, err)
	}
	return h, nil
}

// Do runs fn on a dedicated OS thread switched into the named namespace and
// waits for it. Sockets opened and processes started by fn (exec.Cmd.Start)
// belong to that namespace; goroutines fn starts do not. If the thread cannot
// be switched back it is discarded rather than returned to the runtime.
func Do(name string, fn func() error) error {
	target, err := Open(name)
	if err != nil {
		return err
	}
	defer target.Close()
	return DoHandle(target, fn)
}

// DoHandle is [Do] for an already opened namespace handle.
func DoHandle(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: restore: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ensureSharedDir makes Dir exist and be a shared mount point, as iproute2
// does, so namespace mounts propagate to other mount namespaces.
func ensureSharedDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("netns dir: %w", err)
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("netns dir: make shared: %w", err)
	}
	// Not a mount point yet: bind it onto itself, then mark it shared.
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("netns dir: bind: %w", err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("netns dir: make shared: %w", err)
	}
	return nil
}
