package imagebuild

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
