package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Main dispatches on how the binary was started (see the package doc) and
// returns the process exit code.
func Main(args []string, stdin io.Reader, stdout io.WriteCloser, stderr io.Writer) int {
	name := filepath.Base(args[0])
	if name == "sudo" {
		return Sudo(args[1:], stderr)
	}
	if err := dropSetuid(); err != nil {
		fmt.Fprintln(stderr, "ekagent:", err)
		return 1
	}
	mode := ""
	if len(args) > 1 {
		mode = args[1]
	}
	switch {
	case os.Getpid() == 1:
		cfg, err := LoadConfig(ConfigFile)
		if err == nil {
			err = Init(cfg)
		}
		// Returning from PID 1 panics the kernel; leave a shell instead.
		fmt.Fprintf(stderr, "endpointkit: init failed: %v; starting /bin/sh\n", err)
		unix.Exec("/bin/sh", []string{"sh"}, os.Environ())
		return 1
	case mode == "serve":
		cfg, err := LoadConfig(ConfigFile)
		if err != nil {
			fmt.Fprintln(stderr, "ekagent:", err)
			return 1
		}
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
		defer stop()
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		ready := os.NewFile(3, "ready")
		err = RunServer(ctx, cfg, ready, log)
		if err != nil {
			fmt.Fprintln(stderr, "ekagent:", err)
			return 1
		}
		return 0
	case mode == "getty" && len(args) == 3:
		cfg, err := LoadConfig(ConfigFile)
		if err == nil {
			err = Getty(cfg, args[2])
		}
		if err != nil {
			fmt.Fprintln(stderr, "ekagent:", err)
			return 1
		}
		return 0
	case mode == "sftp-server":
		if err := ServeSFTP(stdin, stdout); err != nil {
			fmt.Fprintln(stderr, "ekagent sftp-server:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(stderr, "usage: ekagent serve | sftp-server | getty TTY (as /init: PID 1; as sudo: sudo)")
	return 2
}

// dropSetuid gives up a set-uid root privilege: only the sudo mode may use
// it.
func dropSetuid() error {
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() != uid {
		if err := unix.Setresgid(gid, gid, gid); err != nil {
			return err
		}
		if err := unix.Setresuid(uid, uid, uid); err != nil {
			return err
		}
	}
	return nil
}
