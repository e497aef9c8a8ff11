package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// SudoGroup is the group whose members may run anything as root without a
// password.
const SudoGroup = "sudo"

// sudoRequest is a parsed sudo command line.
type sudoRequest struct {
	user    string   // -u, default root
	shell   bool     // -s or -i without a command
	login   bool     // -i
	command []string // after the options
}

// ErrSudoUsage is wrapped by the errors of a bad sudo command line.
var ErrSudoUsage = errors.New("usage: sudo [-nEHiks] [-u user] [--] [command [arg ...]]")

func parseSudo(args []string) (sudoRequest, error) {
	r := sudoRequest{user: "root"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			r.command = args[i+1:]
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			r.command = args[i:]
			break
		}
		if a == "--user" || strings.HasPrefix(a, "--user=") {
			a = "-u" + strings.TrimPrefix(strings.TrimPrefix(a, "--user"), "=")
		}
		for j := 1; j < len(a); j++ {
			switch a[j] {
			case 'n', 'E', 'H', 'k', 'S':
				// non-interactive, keep env, set HOME, forget the
				// timestamp: no password is ever asked, so these hold.
			case 's':
				r.shell = true
			case 'i':
				r.shell, r.login = true, true
			case 'u':
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return r, fmt.Errorf("sudo: option -u needs a user: %w", ErrSudoUsage)
					}
					i++
					v = args[i]
				}
				r.user = v
				j = len(a)
			default:
				return r, fmt.Errorf("sudo: unknown option -%c: %w", a[j], ErrSudoUsage)
			}
		}
	}
	if len(r.command) == 0 && !r.shell {
		return r, ErrSudoUsage
	}
	return r, nil
}

// mayBecomeRoot reports whether the user uid (with supplementary groups
// gids) may use sudo: root, or a member of SudoGroup.
func mayBecomeRoot(uid int, gids []int) bool {
	if uid == 0 {
		return true
	}
	g, err := user.LookupGroup(SudoGroup)
	if err != nil {
		return false
	}
	sudoGID, _ := strconv.Atoi(g.Gid)
	for _, id := range gids {
		if id == sudoGID {
			return true
		}
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if id == g.Gid {
					return true
				}
			}
		}
	}
	return false
}

// Sudo runs the sudo command line args (without "sudo"); it only returns on
// error, after writing the reason to stderr, with the exit code to use.
func Sudo(args []string, stderr io.Writer) int {
	req, err := parseSudo(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	uid := os.Getuid()
	gids, _ := os.Getgroups()
	gids = append(gids, os.Getgid())
	if !mayBecomeRoot(uid, gids) {
		name := strconv.Itoa(uid)
		if u, err := user.LookupId(name); err == nil {
			name = u.Username
		}
		fmt.Fprintf(stderr, "sudo: %s is not in the sudoers file (group %q)\n", name, SudoGroup)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "sudo: must be owned by uid 0 and have the setuid bit set")
		return 1
	}
	target, err := lookupAccount(req.user)
	if err != nil {
		fmt.Fprintf(stderr, "sudo: unknown user %s\n", req.user)
		return 1
	}
	argv := req.command
	if req.shell {
		sh := target.shell
		if req.login {
			if len(argv) == 0 {
				argv = []string{"-" + baseName(sh)}
			} else {
				argv = []string{baseName(sh), "-c", strings.Join(argv, " ")}
			}
		} else if len(argv) == 0 {
			argv = []string{sh}
		} else {
			argv = []string{sh, "-c", strings.Join(argv, " ")}
		}
		argv = append([]string{sh}, argv...)
	} else {
		argv = append([]string{argv[0]}, argv...)
	}
	env := sudoEnv(os.Environ(), target, uid)
	path := argv[0]
	if !strings.Contains(path, "/") {
		os.Setenv("PATH", envValue(env, "PATH"))
		if path, err = exec.LookPath(path); err != nil {
			fmt.Fprintf(stderr, "sudo: %s: command not found\n", argv[0])
			return 1
		}
	}
	groups := make([]int, len(target.groups))
	for i, g := range target.groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		fmt.Fprintf(stderr, "sudo: setgroups: %v\n", err)
		return 1
	}
	if err := syscall.Setresgid(int(target.gid), int(target.gid), int(target.gid)); err != nil {
		fmt.Fprintf(stderr, "sudo: setgid: %v\n", err)
		return 1
	}
	if err := syscall.Setresuid(int(target.uid), int(target.uid), int(target.uid)); err != nil {
		fmt.Fprintf(stderr, "sudo: setuid: %v\n", err)
		return 1
	}
	if req.login {
		os.Chdir(target.home)
	}
	err = syscall.Exec(path, argv[1:], env)
	fmt.Fprintf(stderr, "sudo: %s: %v\n", path, err)
	return 1
}

func baseName(p string) string {
	return p[strings.LastIndex(p, "/")+1:]
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// sudoEnv keeps the caller's environment (TERM, locale, …) but sets the
// identity variables of target and a PATH with the sbin directories.
func sudoEnv(env []string, target *account, callerUID int) []string {
	drop := map[string]bool{"HOME": true, "USER": true, "LOGNAME": true, "SHELL": true, "PATH": true,
		"LD_PRELOAD": true, "LD_LIBRARY_PATH": true, "SUDO_USER": true, "SUDO_UID": true, "SUDO_GID": true, "SUDO_COMMAND": true}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	out = append(out, target.env...)
	caller := strconv.Itoa(callerUID)
	if u, err := user.LookupId(caller); err == nil {
		out = append(out, "SUDO_USER="+u.Username, "SUDO_GID="+u.Gid)
	}
	return append(out, "SUDO_UID="+caller)
}
