package lessonmeta

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// MaxConfigSize is the largest stage configuration file a lesson may
// carry, in bytes: configurators read such files whole, and a lesson is
// text (NRE Labs' largest is a few kilobytes).
const MaxConfigSize = 16 << 20

// confined reports a lesson file (rel, in fsys, at path on disk) that
// resolves outside the lesson directory (a symbolic link pointing out of
// it) with ErrUnsafePath, and a configuration file over MaxConfigSize with
// ErrTooLarge; field is where the metafile asks for it. It returns
// whether the file is usable.
func (c *checker) confined(l *Lesson, fsys fs.FS, field, rel, path string, limit int64) bool {
	if root, err := filepath.EvalSymlinks(l.Dir); err == nil {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			c.errf(ErrUnsafePath, field, "%s cannot be resolved: %v", rel, err)
			return false
		}
		if r, err := filepath.Rel(root, real); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			c.errf(ErrUnsafePath, field, "%s is a symbolic link to %s, outside the lesson directory: copy the file into the lesson", rel, real)
			return false
		}
	}
	if st, err := fs.Stat(fsys, rel); err == nil && limit > 0 && st.Size() > limit {
		c.errf(ErrTooLarge, field, "%s is %d MiB; a configuration file may be at most %d MiB", rel, st.Size()>>20, limit>>20)
		return false
	}
	return true
}

// symlinkLoop is the problem of a lesson path that is a loop of symbolic
// links.
func symlinkLoop(path string) *Problem {
	return &Problem{File: path, Kind: ErrUnsafePath, Message: fmt.Sprintf("%s is a loop of symbolic links: point it at the lesson directory", path)}
}
