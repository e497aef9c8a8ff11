package lessonmeta

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ImageFile is the name of an image's metafile.
const ImageFile = "image.meta.yaml"

// ErrNoImage is returned (wrapped) by an [ImageSource] that has no image of
// the requested slug.
var ErrNoImage = errors.New("lessonmeta: no such image")

// Flavor is an image's trust level in Antidote: trusted images ran
// privileged (all the QEMU ones), untrusted ones under Kata, legacy ones
// unprivileged on the default runtime.
type Flavor string

// Flavors.
const (
	FlavorTrusted   Flavor = "trusted"
	FlavorUntrusted Flavor = "untrusted"
	FlavorLegacy    Flavor = "legacy"
)

// Image is a validated image.meta.yaml.
type Image struct {
	Slug              string
	Description       string
	Flavor            Flavor
	EnableForwarding  bool
	NetworkInterfaces []string // guest names of the data interfaces, in order; may be empty
	SSHUser           string
	SSHPassword       string
	ConfigUser        string
	ConfigPassword    string

	// APIs are the management APIs the image declares, from the
	// manifest.json of an image directory built by imagebuild; nil when
	// unknown (an Antidote image.meta.yaml alone does not say).
	APIs *ImageAPIs

	File     string     // the metafile, as given
	Warnings []*Problem // problems that do not make it invalid
}

// ParseImage decodes and validates image.meta.yaml contents.
func ParseImage(file string, data []byte, opts Options) (*Image, error) {
	raw, c, err := decodeChecked[RawImage](file, data, opts)
	if c == nil {
		return nil, err
	}
	if c.required("slug", raw.Slug, "the image's slug (its directory name)") && !imageSlugRE.MatchString(raw.Slug) {
		c.errf(ErrInvalid, "slug", "%q is not an image slug (letters, digits and hyphens)", raw.Slug)
	}
	c.enum("flavor", raw.Flavor, []string{"trusted", "untrusted", "legacy"}, nil)
	c.required("sshUser", raw.SSHUser, "the user a learner's SSH session logs in as")
	c.required("sshPassword", raw.SSHPassword, "sshUser's password")
	c.required("configUser", raw.ConfigUser, "the user the configurators log in as")
	c.required("configPassword", raw.ConfigPassword, "configUser's password")
	seen := map[string]bool{}
	for i, n := range raw.NetworkInterfaces {
		f := fmt.Sprintf("networkInterfaces[%d]", i)
		switch {
		case !c.required(f, n, "an interface name"):
		case n == "eth0":
			c.errf(ErrInvalid, f, "eth0 is the management interface and cannot be a data interface")
		case seen[n]:
			c.errf(ErrDuplicate, f, "%q is listed twice", n)
		}
		seen[n] = true
	}
	if raw.Privileged != nil {
		c.warnf(ErrUnknownKey, "privileged", "ignored since antidote-core v0.7; flavor says how the image runs")
	}
	if err := c.probs.err(); err != nil {
		return nil, err
	}
	return &Image{
		Slug: raw.Slug, Description: raw.Description, Flavor: Flavor(raw.Flavor),
		EnableForwarding: raw.EnableForwarding, NetworkInterfaces: raw.NetworkInterfaces,
		SSHUser: raw.SSHUser, SSHPassword: raw.SSHPassword, ConfigUser: raw.ConfigUser, ConfigPassword: raw.ConfigPassword,
		File: file, Warnings: c.probs.warnings(),
	}, nil
}

// LoadImage reads and validates an image metafile: path is an image
// directory (holding image.meta.yaml) or the file itself.
func LoadImage(path string, opts Options) (*Image, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ImageFile)
	}
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseImage(path, data, opts)
}

// ImageDirs is an [ImageSource] over directories: for slug S it reads
// D/S/image.meta.yaml for each D in order (a curriculum's images/ folder, or
// a folder of built image directories), or D/image.meta.yaml when D is
// itself the directory of image S. The first found wins. A file whose slug
// differs from S is an error.
type ImageDirs []string

var _ ImageSource = ImageDirs(nil)

// Image returns the metadata of image slug, or an error wrapping
// [ErrNoImage] when no directory has it.
func (d ImageDirs) Image(slug string) (*Image, error) {
	if slug == "" || strings.ContainsAny(slug, `/\`) || slug == "." || slug == ".." {
		return nil, fmt.Errorf("%w: %q is not an image slug", ErrNoImage, slug)
	}
	for _, dir := range d {
		for _, file := range []string{filepath.Join(dir, slug, ImageFile), filepath.Join(dir, ImageFile)} {
			if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			im, err := LoadImage(file, Options{})
			if err != nil {
				return nil, err
			}
			if im.APIs, err = loadImageAPIs(file); err != nil {
				return nil, fmt.Errorf("lessonmeta: image %q: %w", slug, err)
			}
			if filepath.Dir(file) == filepath.Clean(dir) && im.Slug != slug {
				continue // dir is the directory of another image
			}
			if im.Slug != slug {
				return nil, fmt.Errorf("lessonmeta: %s: slug %q does not match its directory %q", file, im.Slug, slug)
			}
			return im, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoImage, slug)
}

// String describes the directories, for messages.
func (d ImageDirs) String() string {
	if len(d) == 0 {
		return "nowhere, no image directories given"
	}
	return strings.Join(d, ", ")
}
