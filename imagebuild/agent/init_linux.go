package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mount is one filesystem mounted at boot.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// bootMounts are the API file systems PID 1 mounts.
func bootMounts() []mount {
	return []mount{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
}

// mountAll mounts ms, creating the mount points; already mounted targets
// (EBUSY) are fine.
func mountAll(ms []mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// console reopens fds 0-2 on /dev/console (the kernel may have started
// init without one) and returns it for messages.
func console() *os.File {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return os.Stdout
	}
	for fd := 0; fd < 3; fd++ {
		unix.Dup2(int(f.Fd()), fd)
	}
	return f
}

// loadModules inserts the modules in order; already loaded ones are fine.
func loadModules(paths []string, tr *tracer) error {
	var errs []error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("load %s: %w", filepath.Base(p), err))
		}
		tr.step("module %s", filepath.Base(p))
	}
	return errors.Join(errs...)
}

// writeSysctls writes key=value pairs under /proc/sys.
func writeSysctls(kv map[string]string) error {
	var errs []error
	for k, v := range kv {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// setHostname sets the kernel hostname and /etc/hostname, /etc/hosts.
func setHostname(name string) error {
	if name == "" {
		return nil
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname %q: %w", name, err)
	}
	os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644)
	hosts := "127.0.0.1\tlocalhost\n127.0.1.1\t" + name + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	return os.WriteFile("/etc/hosts", []byte(hosts), 0o644)
}

// Init is PID 1 of the tiny endpoint. It never returns unless setup fails
// before the system is usable; it powers the machine off (or reboots) when
// asked.
//
// Under TCG every step costs CPU time of the one emulated CPU, so the boot
// does the least work in the order that overlaps the waits: the SSH server
// starts first (it needs no device); DHCP runs in-process as soon as the
// interface exists, while the remaining modules load; the share's modules
// load only when the VM has a 9p device.
func Init(cfg *Config) error {
	if err := mountAll(bootMounts()); err != nil {
		return err
	}
	con := console()
	log := slog.New(slog.NewTextHandler(con, &slog.HandlerOptions{Level: slog.LevelWarn}))
	say := func(format string, a ...any) { fmt.Fprintf(con, "endpointkit: "+format+"\n", a...) }
	params := cmdline()
	_, debug := params[DebugParam]
	tr := &tracer{say: say, on: debug}
	tr.step("init started")

	if cfg.Mode == ModeStage1 {
		if err := loadModules(cfg.Modules, tr); err != nil {
			log.Warn("modules", "err", err)
		}
		return stage1(params, say)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2, unix.SIGINT, unix.SIGPWR)
	sup := &supervisor{log: log}
	ready, err := sup.startServer()
	if err != nil {
		return err
	}
	if err := writeSysctls(cfg.Sysctls); err != nil {
		log.Warn("sysctl", "err", err)
	}
	name := params[HostnameParam]
	if name == "" {
		name = cfg.Hostname
	}
	if err := setHostname(name); err != nil {
		log.Warn("hostname", "err", err)
	}

	ctx := context.Background()
	namer := newNICNamer(cfg.NICNames, log)
	if err := namer.watch(ctx); err != nil {
		log.Warn("name NICs", "err", err)
	}
	bound := startDHCP(ctx, cfg.DHCP, name, log, tr)
	if err := loadModules(cfg.Modules, tr); err != nil {
		log.Warn("modules", "err", err)
	}
	if len(cfg.ShareModules) > 0 && hasVirtioDevice(virtio9P) {
		if err := loadModules(cfg.ShareModules, tr); err != nil {
			log.Warn("modules", "err", err)
		}
	}
	tr.step("modules loaded")
	if err := linksUp(namer); err != nil {
		log.Warn("links", "err", err)
	}
	if cfg.Share9PTag != "" && has9PTag(cfg.Share9PTag) {
		if err := mount9P(cfg.Share9PTag, cfg.Share9PPath); err != nil {
			log.Warn("9p", "err", err)
		}
	}
	tr.step("links and share set up")
	power := make(chan struct{}, 1)
	go watchPowerButton(power, log)
	rawCmdline, _ := os.ReadFile("/proc/cmdline")
	loginTTY := ConsoleTTY(string(rawCmdline))
	gettyLate := time.After(gettyFallback)

	sshReady, announced := false, false
	for {
		select {
		case <-gettyLate:
			sup.startGetty(loginTTY)
		case <-ready:
			tr.step("ssh server listening")
			sshReady, ready = true, nil
		case <-bound:
			tr.step("dhcp lease")
			bound = nil
		case <-power:
			shutdown(con, unix.LINUX_REBOOT_CMD_POWER_OFF, sup)
		case s := <-sigs:
			switch s {
			case unix.SIGCHLD:
				sup.reap()
			case unix.SIGUSR2, unix.SIGPWR: // busybox poweroff
				shutdown(con, unix.LINUX_REBOOT_CMD_POWER_OFF, sup)
			case unix.SIGUSR1: // busybox halt
				shutdown(con, unix.LINUX_REBOOT_CMD_HALT, sup)
			case unix.SIGTERM, unix.SIGINT: // busybox reboot, ctrl-alt-del
				shutdown(con, unix.LINUX_REBOOT_CMD_RESTART, sup)
			}
		}
		if bound == nil && sshReady && !announced {
			announced = true
			tr.step("ready")
			announceHostKeys(con, cfg.SSH.HostKeys)
			say("ready hostname=%s addr=%s", name, ifaceAddr(firstOr(cfg.DHCP, "eth0")))
			sup.startGetty(loginTTY)
		}
	}
}

// dhcpGiveUp is how long the ready marker waits for a lease; DHCP goes on
// in the background after it.
const dhcpGiveUp = 30 * time.Second

// startDHCP runs a DHCP client on each interface once it exists. The
// returned channel closes when the first interface has its lease (or after
// dhcpGiveUp, or at once without DHCP interfaces).
func startDHCP(ctx context.Context, ifaces []string, hostname string, log *slog.Logger, tr *tracer) <-chan struct{} {
	done := make(chan struct{})
	if len(ifaces) == 0 {
		close(done)
		return done
	}
	bound := make(chan struct{})
	go func() {
		select {
		case <-bound:
		case <-time.After(dhcpGiveUp):
			log.Warn("no DHCP lease yet; going on without", "iface", ifaces[0])
		}
		close(done)
	}()
	for i, ifc := range ifaces {
		b := make(chan struct{})
		if i == 0 {
			b = bound
		}
		go func() {
			if err := waitLinkUp(ctx, ifc); err != nil {
				log.Warn("dhcp", "iface", ifc, "err", err)
				return
			}
			tr.step("%s up", ifc)
			d := &dhcpClient{ifc: ifc, hostname: hostname, log: log, attempt: time.Second}
			d.run(ctx, b)
		}()
	}
	return done
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// tracer prints boot-step timings (kernel uptime, ms) on the console when
// the kernel command line has endpointkit.debug; otherwise it does nothing.
type tracer struct {
	say func(string, ...any)
	on  bool
}

func (t *tracer) step(format string, a ...any) {
	if !t.on {
		return
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	t.say("[%.3f] %s", float64(ts.Nano())/1e9, fmt.Sprintf(format, a...))
}

func cmdline() map[string]string {
	raw, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(raw))
}

// supervisor starts the agent's children and reaps every process that
// ends (PID 1 inherits orphans).
type supervisor struct {
	log       *slog.Logger
	serverPID int
	stopping  bool
	// the console login (getty_linux.go)
	gettyPID, gettyFails int
	gettyTTY             string
	gettyStarted         time.Time
}

func (s *supervisor) start(argv []string, extra []*os.File) (int, error) {
	files := append([]*os.File{os.Stdin, os.Stdout, os.Stderr}, extra...)
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Dir: "/", Files: files,
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}})
	if err != nil {
		return 0, err
	}
	return p.Pid, nil
}

// startServer starts "ekagent serve"; the returned channel is closed when
// the server reports it listens (one byte on fd 3).
func (s *supervisor) startServer() (<-chan struct{}, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = "/init"
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	pid, err := s.start([]string{exe, "serve"}, []*os.File{w})
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("agent: start ssh server: %w", err)
	}
	s.serverPID = pid
	ready := make(chan struct{})
	go func() {
		defer r.Close()
		var b [1]byte
		if n, _ := r.Read(b[:]); n == 1 {
			close(ready)
		}
	}()
	return ready, nil
}

// reap collects every ended child; a dead SSH server is restarted.
func (s *supervisor) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		s.gettyEnded(pid)
		if pid == s.serverPID && !s.stopping {
			s.log.Warn("ssh server ended; restarting", "status", ws.ExitStatus())
			time.Sleep(200 * time.Millisecond)
			if _, err := s.startServer(); err != nil {
				s.log.Error("restart ssh server", "err", err)
			}
		}
	}
}

// shutdown stops every process, syncs, unmounts and powers off, halts or
// reboots. It does not return.
func shutdown(con io.Writer, how int, sup *supervisor) {
	sup.stopping = true
	fmt.Fprintln(con, "endpointkit: shutting down")
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		sup.reap()
		if !othersAlive() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	sup.reap()
	unix.Sync()
	unmountAll()
	unix.Sync()
	fmt.Fprintln(con, "endpointkit: power off")
	unix.Reboot(how)
	select {}
}

// othersAlive reports whether any process besides PID 1 and kernel threads
// exists.
func othersAlive() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name() == "1" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(raw) > 0 {
			return true
		}
	}
	return false
}

// unmountAll unmounts what /proc/mounts lists, deepest first, skipping the
// pseudo filesystems the kernel keeps anyway.
func unmountAll() {
	raw, _ := os.ReadFile("/proc/mounts")
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 3 || f[1] == "/" {
			continue
		}
		switch f[2] {
		case "proc", "sysfs", "devtmpfs", "devpts":
			continue
		}
		if err := unix.Unmount(f[1], 0); err != nil {
			unix.Unmount(f[1], unix.MNT_DETACH)
		}
	}
}

// RunServer is the "serve" mode: the SSH server of cfg on its port. It
// writes one byte to ready once listening.
func RunServer(ctx context.Context, cfg *Config, ready io.Writer, log *slog.Logger) error {
	srv, err := NewServer(cfg.SSH, log)
	if err != nil {
		return err
	}
	port := cfg.SSH.Port
	if port == 0 {
		port = 22
	}
	ln, err := listen(port)
	if err != nil {
		return err
	}
	srv.warmUp()
	if ready != nil {
		ready.Write([]byte{1})
	}
	return srv.Serve(ctx, ln)
}
