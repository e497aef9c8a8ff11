package imagebuild

import (
	"os"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// ISOSource is an installer ISO and the answers that drive it.
type ISOSource struct {
	// Path (relative to the recipe) or URL (http, https, file, or a blob
	// store URL) of the ISO; exactly one of Path and URL. It is kept in
	// the raw-image store like a vendor disk.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	URL  string `yaml:"url,omitempty" json:"url,omitempty"`
	// SHA256 of the ISO, hex; required.
	SHA256 string `yaml:"sha256" json:"sha256" jsonschema:"pattern=^[0-9a-f]{64}$"`
	// Kernel and Initrd are the installer's kernel and initrd inside the
	// ISO, booted directly so that the answers' location goes on its
	// command line. Default: the first pair found of the Debian layouts
	// (/install.amd/vmlinuz + initrd.gz, /install/vmlinuz + initrd.gz,
	// /linux + /initrd.gz).
	Kernel string `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	Initrd string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	// Answers is the answer file of the unattended install.
	Answers ISOAnswers `yaml:"answers" json:"answers"`
	// Cmdline is appended to the installer's kernel command line.
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
	// DiskSizeMiB is the size of the disk installed to (default 4096).
	DiskSizeMiB int `yaml:"diskSizeMiB,omitempty" json:"diskSizeMiB,omitempty" jsonschema:"minimum=0"`
	// TimeoutMinutes bounds the install (default 60). An installer that
	// stops at a question the answers do not answer fails sooner: the
	// error names the question from the console.
	TimeoutMinutes int `yaml:"timeoutMinutes,omitempty" json:"timeoutMinutes,omitempty" jsonschema:"minimum=0"`
}

// ISOAnswers is an installer's answer file.
type ISOAnswers struct {
	// Format is the installer's: preseed (the Debian installer). The
	// field leaves room for kickstart and autoinstall.
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema:"enum=preseed"`
	// File is the answer file, relative to the recipe.
	File string `yaml:"file" json:"file"`
}

// Answer file formats.
const (
	AnswersPreseed = "preseed"
)

// resolveISO checks the iso: section (kind iso needs it, other kinds must
// not have it) and fills its defaults.
func (r *Recipe) resolveISO(bad func(field, format string, a ...any)) {
	iso := r.ISO
	switch {
	case r.Kind == string(vmimage.KindISO) && iso == nil:
		bad("iso", "missing: kind iso needs iso.path or iso.url, iso.sha256 and iso.answers.file")
		return
	case iso == nil:
		return
	case r.Kind != string(vmimage.KindISO):
		bad("iso", "only used by kind iso")
		return
	}
	if (iso.Path == "") == (iso.URL == "") {
		bad("iso", "give exactly one of path and url")
	}
	if iso.Path != "" {
		iso.Path = r.abs(iso.Path)
		if _, err := os.Stat(iso.Path); err != nil {
			bad("iso.path", "missing base file: %v", err)
		}
	}
	if !hexRe.MatchString(iso.SHA256) {
		bad("iso.sha256", "want the 64 lower-case hex digits of the ISO's sha256 (sha256sum FILE)")
	}
	if (iso.Kernel == "") != (iso.Initrd == "") {
		bad("iso.kernel", "give both iso.kernel and iso.initrd (paths inside the ISO), or neither")
	}
	for f, p := range map[string]string{"iso.kernel": iso.Kernel, "iso.initrd": iso.Initrd} {
		if p != "" && !strings.HasPrefix(p, "/") {
			bad(f, "%q: want an absolute path inside the ISO", p)
		}
	}
	switch iso.Answers.Format {
	case "":
		iso.Answers.Format = AnswersPreseed
	case AnswersPreseed:
	case "kickstart", "autoinstall":
		bad("iso.answers.format", "%s answer files are not supported yet; only preseed (the Debian installer)", iso.Answers.Format)
	default:
		bad("iso.answers.format", "%q: want preseed%s", iso.Answers.Format, didYouMean(iso.Answers.Format, AnswersPreseed))
	}
	if iso.Answers.File == "" {
		bad("iso.answers.file", "missing: the answer file, relative to the recipe")
	} else {
		iso.Answers.File = r.abs(iso.Answers.File)
		if _, err := os.Stat(iso.Answers.File); err != nil {
			bad("iso.answers.file", "missing base file: %v", err)
		}
	}
	if iso.DiskSizeMiB == 0 {
		iso.DiskSizeMiB = 4096
	}
	if iso.TimeoutMinutes == 0 {
		iso.TimeoutMinutes = 60
	}
}
