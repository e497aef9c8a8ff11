package agent

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Host keys on the console. The agent prints the public halves of its SSH
// host keys on the serial console at boot, between these lines (the
// convention cloud-init follows): the console is a channel only the guest
// writes, so a launcher can learn and pin the keys of an image that lists
// none (qemulaunch), never trusting whatever answers on the network.
const (
	HostKeysBegin = "-----BEGIN SSH HOST KEY KEYS-----"
	HostKeysEnd   = "-----END SSH HOST KEY KEYS-----"
)

// announceHostKeys prints the public keys of the private key files in
// paths between HostKeysBegin and HostKeysEnd; unreadable files are left
// out.
func announceHostKeys(w io.Writer, paths []string) {
	var b strings.Builder
	b.WriteString(HostKeysBegin + "\n")
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		signer, err := ssh.ParsePrivateKey(raw)
		if err != nil {
			continue
		}
		b.Write(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	}
	b.WriteString(HostKeysEnd + "\n")
	fmt.Fprint(w, b.String())
}
