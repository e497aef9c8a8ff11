package imagebuild

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/endpointkit/endpointkit/vmimage"
)

// CloudInitReadyMarker starts the line a seed has cloud-init print on the
// console when its final stage is done (final_message); CloudInitReadyRegex
// matches it and is the default readiness of disk images with
// disk.cloudInit. Before then sshd may still restart (cloud-init's
// set-passwords applies ssh_pwauth) and runcmd may not have run.
const (
	CloudInitReadyMarker = "endpointkit: cloud-init finished"
	CloudInitReadyRegex  = `endpointkit: cloud-init finished\b`
)

// seedFormat names what the seed holds; it is part of a disk image's
// cache key, so changing the user-data invalidates cached disk images
// without touching the other kinds'.
const seedFormat = "cloud-config/2: users, hostname, etc-hosts, ssh host keys, runcmd, final_message"

// cloudConfig is the cloud-init user-data of a seed (cloud-init's
// cloud-config modules users-groups, set-hostname, update-etc-hosts, ssh,
// runcmd).
type cloudConfig struct {
	Hostname         string        `yaml:"hostname"`
	PreserveHostname bool          `yaml:"preserve_hostname"`
	ManageEtcHosts   bool          `yaml:"manage_etc_hosts"`
	SSHPwauth        bool          `yaml:"ssh_pwauth"`
	Users            []cloudUser   `yaml:"users"`
	Chpasswd         cloudChpasswd `yaml:"chpasswd"`
	// The image's own host keys are replaced by SSHKeys, and no others
	// are generated: the manifest lists exactly the keys sshd offers.
	SSHDeleteKeys  bool              `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string          `yaml:"ssh_genkeytypes"`
	SSHKeys        map[string]string `yaml:"ssh_keys"`
	Runcmd         [][]string        `yaml:"runcmd,omitempty"`
	FinalMessage   string            `yaml:"final_message"`
	// A bake's seed also installs packages, writes files and powers the
	// guest off when cloud-init is done.
	Packages   []string         `yaml:"packages,omitempty"`
	WriteFiles []cloudFile      `yaml:"write_files,omitempty"`
	PowerState *cloudPowerState `yaml:"power_state,omitempty"`
}

type cloudFile struct {
	Path        string `yaml:"path"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
}

type cloudPowerState struct {
	Mode    string `yaml:"mode"`
	Message string `yaml:"message"`
	Timeout int    `yaml:"timeout"`
}

type cloudUser struct {
	Name              string   `yaml:"name"`
	Groups            string   `yaml:"groups,omitempty"`
	Sudo              string   `yaml:"sudo,omitempty"`
	Shell             string   `yaml:"shell,omitempty"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	PlainTextPasswd   string   `yaml:"plain_text_passwd,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type cloudChpasswd struct {
	Expire bool `yaml:"expire"`
}

// Seed is a cloud-init NoCloud seed for a recipe, for vendor images that
// run cloud-init. Its user-data creates the recipe's users (password,
// groups, passwordless sudo for group sudo, authorized keys), sets the
// hostname to the slug (and /etc/hosts to match), installs SSH host keys
// generated here in place of the image's own, and runs the recipe's steps
// once, as root, at the end of the first boot (runcmd; each step with
// sh -ec), and prints [CloudInitReadyMarker] on the console when done.
// The meta-data names the instance.
type Seed struct {
	MetaData, UserData []byte
	// HostKeys are the public halves of the SSH host keys in UserData, for
	// the manifest: a launcher pins them as for debootstrap images.
	HostKeys []vmimage.HostKey
}

// NewSeed makes the seed of r with fresh SSH host keys (ed25519 and ECDSA
// P-256). The instance ID tells cloud-init a first boot from a later one:
// give each image its own.
func NewSeed(r *Recipe, instanceID string) (*Seed, error) {
	return newSeed(r, instanceID, nil)
}

// newSeed makes r's seed; edit, when set, changes the user-data before it
// is rendered.
func newSeed(r *Recipe, instanceID string, edit func(*cloudConfig)) (*Seed, error) {
	cc := cloudConfig{Hostname: r.Slug, ManageEtcHosts: true, SSHPwauth: true, SSHDeleteKeys: true,
		SSHGenKeyTypes: []string{}, SSHKeys: map[string]string{},
		FinalMessage: CloudInitReadyMarker + " hostname=" + r.Slug + " datasource=$DATASOURCE up $UPTIME s"}
	for _, u := range r.Users {
		cu := cloudUser{Name: u.Name, Groups: strings.Join(u.Groups, ","), Shell: u.Shell,
			PlainTextPasswd: u.Password, SSHAuthorizedKeys: u.AuthorizedKeys}
		if slices.Contains(u.Groups, "sudo") {
			cu.Sudo = "ALL=(ALL) NOPASSWD:ALL"
		}
		cc.Users = append(cc.Users, cu)
	}
	for _, step := range r.Steps {
		cc.Runcmd = append(cc.Runcmd, []string{"sh", "-ec", step})
	}
	s := &Seed{}
	pairs, err := vmimage.GenerateHostKeys()
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		name := strings.TrimSuffix(strings.TrimPrefix(p.File, "ssh_host_"), "_key")
		cc.SSHKeys[name+"_private"] = p.PrivatePEM
		cc.SSHKeys[name+"_public"] = p.PublicKey
		s.HostKeys = append(s.HostKeys, p.HostKey)
	}
	if edit != nil {
		edit(&cc)
	}
	if s.UserData, err = yamlDoc("#cloud-config\n", cc); err != nil {
		return nil, err
	}
	s.MetaData = fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", instanceID, r.Slug)
	return s, nil
}

// ISO returns the seed as a NoCloud seed disk: ISO 9660 with Joliet
// names, volume label "cidata", files meta-data and user-data.
func (s *Seed) ISO() ([]byte, error) {
	var iso bytes.Buffer
	if err := writeSeedISO(&iso, "cidata", map[string][]byte{"meta-data": s.MetaData, "user-data": s.UserData}, time.Unix(0, 0)); err != nil {
		return nil, err
	}
	return iso.Bytes(), nil
}

// SeedISO returns the NoCloud seed disk of a new seed for r (see
// [NewSeed] and [Seed.ISO]).
func SeedISO(r *Recipe, instanceID string) ([]byte, error) {
	s, err := NewSeed(r, instanceID)
	if err != nil {
		return nil, err
	}
	return s.ISO()
}

// ISO 9660 with Joliet names, enough for a cloud-init NoCloud seed: one
// root directory of small files.
const isoSector = 2048

// writeSeedISO writes files as an ISO 9660 image with volume label label
// and Joliet names (so "meta-data" keeps its name; the primary tree has
// 8.3 names for readers without Joliet).
func writeSeedISO(w io.Writer, label string, files map[string][]byte, now time.Time) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	const (
		pvdSector, svdSector, termSector = 16, 17, 18
		pathL, pathM, jPathL, jPathM     = 19, 20, 21, 22
		rootSector, jRootSector          = 23, 24
		firstData                        = 25
	)
	extents := map[string]uint32{}
	next := uint32(firstData)
	for _, n := range names {
		extents[n] = next
		next += uint32((len(files[n]) + isoSector - 1) / isoSector)
		if len(files[n]) == 0 {
			next++
		}
	}
	total := next
	img := make([]byte, int(total)*isoSector)
	sector := func(n int) []byte { return img[n*isoSector : (n+1)*isoSector] }

	primaryName := func(n string) []byte {
		base, ext, _ := strings.Cut(strings.ToUpper(n), ".")
		clean := func(s string, max int) string {
			var b strings.Builder
			for _, c := range s {
				if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
					b.WriteRune(c)
				} else {
					b.WriteRune('_')
				}
			}
			s = b.String()
			if len(s) > max {
				s = s[:max]
			}
			return s
		}
		return []byte(clean(base, 8) + "." + clean(ext, 3) + ";1")
	}
	jolietName := func(n string) []byte { return ucs2(n) }

	dir := func(buf []byte, self uint32, name func(string) []byte) {
		off := 0
		add := func(rec []byte) { off += copy(buf[off:], rec) }
		add(dirRecord([]byte{0}, self, isoSector, true, now))
		add(dirRecord([]byte{1}, self, isoSector, true, now))
		for _, n := range names {
			add(dirRecord(name(n), extents[n], uint32(len(files[n])), false, now))
		}
	}
	dir(sector(rootSector), rootSector, primaryName)
	dir(sector(jRootSector), jRootSector, jolietName)
	for _, n := range names {
		copy(img[int(extents[n])*isoSector:], files[n])
	}
	pathTable := func(buf []byte, root uint32, order binary.ByteOrder) {
		buf[0] = 1 // name length
		order.PutUint32(buf[2:], root)
		order.PutUint16(buf[6:], 1)
	}
	pathTable(sector(pathL), rootSector, binary.LittleEndian)
	pathTable(sector(pathM), rootSector, binary.BigEndian)
	pathTable(sector(jPathL), jRootSector, binary.LittleEndian)
	pathTable(sector(jPathM), jRootSector, binary.BigEndian)

	volDesc := func(buf []byte, typ byte, joliet bool, root, pl, pm uint32) {
		buf[0] = typ
		copy(buf[1:], "CD001")
		buf[6] = 1
		text := func(off, n int, s string) {
			if joliet {
				b := ucs2(s)
				for i := 0; i+1 < n; i += 2 {
					buf[off+i], buf[off+i+1] = 0, ' '
				}
				copy(buf[off:off+n], b)
				return
			}
			copy(buf[off:off+n], fmt.Sprintf("%-*s", n, s))
		}
		text(8, 32, "LINUX")
		text(40, 32, label)
		bothEndian32(buf[80:], total)
		if joliet {
			copy(buf[88:], "%/E") // UCS-2 level 3
		}
		bothEndian16(buf[120:], 1)
		bothEndian16(buf[124:], 1)
		bothEndian16(buf[128:], isoSector)
		bothEndian32(buf[132:], 10)
		binary.LittleEndian.PutUint32(buf[140:], pl)
		binary.BigEndian.PutUint32(buf[148:], pm)
		copy(buf[156:], dirRecord([]byte{0}, root, isoSector, true, now))
		for _, f := range [][2]int{{190, 128}, {318, 128}, {446, 128}, {574, 128}, {702, 37}, {739, 37}, {776, 37}} {
			text(f[0], f[1], "")
		}
		text(574, 128, "ENDPOINTKIT IMAGEBUILD")
		stamp := now.UTC().Format("20060102150405") + "00"
		for _, off := range []int{813, 830, 864} {
			copy(buf[off:], stamp)
		}
		copy(buf[847:], "0000000000000000")
		buf[881] = 1
	}
	volDesc(sector(pvdSector), 1, false, rootSector, pathL, pathM)
	volDesc(sector(svdSector), 2, true, jRootSector, jPathL, jPathM)
	term := sector(termSector)
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	_, err := w.Write(img)
	return err
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func bothEndian16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func bothEndian32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// dirRecord is an ISO 9660 directory record.
func dirRecord(name []byte, extent, size uint32, isDir bool, t time.Time) []byte {
	n := 33 + len(name)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	bothEndian32(r[2:], extent)
	bothEndian32(r[10:], size)
	u := t.UTC()
	copy(r[18:], []byte{byte(u.Year() - 1900), byte(u.Month()), byte(u.Day()), byte(u.Hour()), byte(u.Minute()), byte(u.Second()), 0})
	if isDir {
		r[25] = 2
	}
	bothEndian16(r[28:], 1)
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}
