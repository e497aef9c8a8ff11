package configure

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/endpoint"
)

// Napalm is the configurator of the napalm method (<ep>-<driver>.txt). The
// junos driver is built in: the file is loaded with Junos NETCONF
// load-configuration (format detected: XML, curly-brace text, or set
// commands), merged — or, when Target.Replace, overriding the whole
// configuration — and committed. Other drivers run python napalm
// (load_merge_candidate / load_replace_candidate, commit_config) when it is
// installed for Python, else fail with [ErrNeedsNapalm].
type Napalm struct {
	Dial DialOptions
	// Python is the interpreter for non-junos drivers (default python3).
	Python string
}

var _ Configurator = (*Napalm)(nil)

// Configure loads the stage's file onto t with the stage's driver.
func (n *Napalm) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	raw, err := os.ReadFile(sc.File)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrMissingConfig, err)
	}
	switch sc.Driver {
	case "junos":
		return n.junos(ctx, t, sc, string(raw))
	case "":
		return Report{}, fmt.Errorf("%w: %s: no NAPALM driver (name the file <endpoint>-<driver>.txt, e.g. %s-junos.txt)", ErrBadConfig, sc.File, t.Name)
	}
	return n.python(ctx, t, sc)
}

// JunosFormat is how a Junos configuration file is written.
type JunosFormat string

// Junos configuration formats.
const (
	JunosXML  JunosFormat = "xml"  // <configuration>…</configuration>
	JunosText JunosFormat = "text" // curly-brace text
	JunosSet  JunosFormat = "set"  // set/delete commands
)

// DetectJunosFormat tells the format of a Junos configuration: XML when
// the first significant character is '<', set when the first significant
// line is a configuration-mode command (set, delete, …), text otherwise.
// Blank lines and comments (#, /* */ on one line) are skipped.
func DetectJunosFormat(cfg string) JunosFormat {
	sc := bufio.NewScanner(strings.NewReader(cfg))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || (strings.HasPrefix(l, "/*") && strings.HasSuffix(l, "*/")) {
			continue
		}
		if strings.HasPrefix(l, "<") {
			return JunosXML
		}
		switch strings.Fields(l)[0] {
		case "set", "delete", "deactivate", "activate", "insert", "rename", "annotate", "protect", "unprotect":
			return JunosSet
		}
		return JunosText
	}
	return JunosText
}

// JunosLoadRPC builds the load-configuration RPC for cfg: merge by default
// ("replace" when curly-brace text carries replace: tags), override when
// replace is true; set commands always load with action "set".
func JunosLoadRPC(cfg string, replace bool) string {
	format := DetectJunosFormat(cfg)
	action := "merge"
	switch {
	case format == JunosSet:
		action = "set"
	case replace:
		action = "override"
	case format == JunosText && strings.Contains(cfg, "replace:"):
		action = "replace"
	}
	var b strings.Builder
	switch format {
	case JunosXML:
		fmt.Fprintf(&b, `<load-configuration action="%s" format="xml">`, action)
		b.WriteString(stripXMLDecl(cfg))
	case JunosSet:
		fmt.Fprintf(&b, `<load-configuration action="%s" format="text"><configuration-set>`, action)
		xml.EscapeText(&b, []byte(cfg))
		b.WriteString("</configuration-set>")
	default:
		fmt.Fprintf(&b, `<load-configuration action="%s" format="text"><configuration-text>`, action)
		xml.EscapeText(&b, []byte(cfg))
		b.WriteString("</configuration-text>")
	}
	b.WriteString("</load-configuration>")
	return b.String()
}

func stripXMLDecl(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<?xml") {
		if i := strings.Index(s, "?>"); i >= 0 {
			s = strings.TrimSpace(s[i+2:])
		}
	}
	return s
}

func (n *Napalm) junos(ctx context.Context, t Target, sc endpoint.StageConfig, cfg string) (Report, error) {
	if DetectJunosFormat(cfg) == JunosXML {
		if _, err := ParseNetconfConfig(sc.File, []byte(cfg)); err != nil {
			return Report{}, err
		}
	}
	c, err := DialNetconf(ctx, t, n.Dial)
	if err != nil {
		return Report{}, err
	}
	defer c.Close()
	rep := &Report{}
	rpc := JunosLoadRPC(cfg, t.Replace)
	err = c.transaction(ctx, rep, func(string) error {
		_, err := c.step(ctx, rep, "load-configuration", rpc)
		return err
	})
	return *rep, err
}

// napalmScript runs one NAPALM load and commit; every parameter arrives in
// the environment (never on the command line).
const napalmScript = `import os, sys
import napalm
e = os.environ
drv = napalm.get_network_driver(e["EK_NAPALM_DRIVER"])
args = {"port": int(e["EK_NAPALM_PORT"])}
if e.get("EK_NAPALM_KNOWN_HOSTS"):
    # netmiko-based drivers: only the target's pinned keys, never accept-any.
    args.update(ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=e["EK_NAPALM_KNOWN_HOSTS"])
dev = drv(hostname=e["EK_NAPALM_HOST"], username=e["EK_NAPALM_USER"], password=e["EK_NAPALM_PASSWORD"],
          optional_args=args)
dev.open()
try:
    if e.get("EK_NAPALM_REPLACE") == "1":
        dev.load_replace_candidate(filename=e["EK_NAPALM_FILE"])
    else:
        dev.load_merge_candidate(filename=e["EK_NAPALM_FILE"])
    print(dev.compare_config())
    dev.commit_config()
except Exception:
    dev.discard_config()
    raise
finally:
    dev.close()
`

func (n *Napalm) python(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	py := n.Python
	if py == "" {
		py = "python3"
	}
	if err := exec.CommandContext(ctx, py, "-c", "import napalm").Run(); err != nil {
		return Report{}, fmt.Errorf("%w: driver %q needs napalm (pip install napalm for %s), or configure this endpoint with the junos driver, netconf or ssh", ErrNeedsNapalm, sc.Driver, py)
	}
	kh, cleanup, err := scriptKnownHosts(ctx, t)
	if err != nil {
		return Report{}, err
	}
	defer cleanup()
	out := newTail(tailSize)
	cmd := exec.CommandContext(ctx, py, "-")
	cmd.Stdin = strings.NewReader(napalmScript)
	replace := "0"
	if t.Replace {
		replace = "1"
	}
	cmd.Env = append(os.Environ(),
		"EK_NAPALM_DRIVER="+sc.Driver, "EK_NAPALM_HOST="+t.Address, "EK_NAPALM_PORT="+strconv.Itoa(t.sshPort()),
		"EK_NAPALM_USER="+t.User, "EK_NAPALM_PASSWORD="+t.Password.Reveal(), "EK_NAPALM_FILE="+sc.File, "EK_NAPALM_REPLACE="+replace, "EK_NAPALM_KNOWN_HOSTS="+kh)
	err = runLocal(ctx, cmd, "napalm "+sc.Driver, out)
	rep := Report{Output: out.String()}
	rep.Steps = []Step{{Name: "napalm " + sc.Driver + " load+commit", OK: err == nil, Output: rep.Output}}
	return rep, err
}
