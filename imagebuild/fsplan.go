package imagebuild

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

// fsEntry is one file of an image's file system, planned before anything
// is written: the same plan is packed into a cpio archive (initramfs) or
// written into a root directory (debootstrap).
type fsEntry struct {
	Path     string      // absolute path in the image
	Mode     fs.FileMode // type bits + permissions (+ setuid)
	UID, GID int
	Src      string // host file to copy (regular files)
	Data     []byte // content (regular files without Src)
	Link     string // symlink target
	Major    int    // device numbers of character devices
	Minor    int
}

type fsPlan []fsEntry

func dirEntry(path string, perm fs.FileMode, uid, gid int) fsEntry {
	return fsEntry{Path: path, Mode: fs.ModeDir | perm, UID: uid, GID: gid}
}

func fileEntry(path string, perm fs.FileMode, data []byte) fsEntry {
	return fsEntry{Path: path, Mode: perm, Data: data}
}

// sorted returns the plan with parents before children and no duplicate
// paths (a later entry wins), adding missing parent directories (0755).
func (p fsPlan) sorted() fsPlan {
	byPath := map[string]fsEntry{}
	for _, e := range p {
		e.Path = filepath.Clean("/" + e.Path)
		byPath[e.Path] = e
		for d := filepath.Dir(e.Path); d != "/"; d = filepath.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = dirEntry(d, 0o755, 0, 0)
			}
		}
	}
	out := make(fsPlan, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// writeCPIO packs the plan as a newc archive.
func (p fsPlan) writeCPIO(w io.Writer) error {
	rw := cpio.Newc.Writer(w)
	for i, e := range p.sorted() {
		info := cpio.Info{Ino: uint64(i + 1), Name: strings.TrimPrefix(e.Path, "/"), Mode: cpioMode(e.Mode), UID: uint64(e.UID), GID: uint64(e.GID), NLink: 1}
		var rec cpio.Record
		switch {
		case e.Mode.IsDir():
			rec = cpio.Record{Info: info, ReaderAt: strings.NewReader("")}
			rec.NLink = 2
		case e.Mode&fs.ModeSymlink != 0:
			info.FileSize = uint64(len(e.Link))
			rec = cpio.Record{Info: info, ReaderAt: strings.NewReader(e.Link)}
		case e.Mode&fs.ModeDevice != 0:
			info.Rmajor, info.Rminor = uint64(e.Major), uint64(e.Minor)
			rec = cpio.Record{Info: info, ReaderAt: strings.NewReader("")}
		case e.Src != "":
			f, err := os.Open(e.Src)
			if err != nil {
				return fmt.Errorf("imagebuild: %s: %w", e.Path, err)
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			rec = cpio.Record{Info: info, ReaderAt: f}
			rec.FileSize = uint64(st.Size())
			err = rw.WriteRecord(rec)
			f.Close()
			if err != nil {
				return fmt.Errorf("imagebuild: cpio %s: %w", e.Path, err)
			}
			continue
		default:
			info.FileSize = uint64(len(e.Data))
			rec = cpio.Record{Info: info, ReaderAt: strings.NewReader(string(e.Data))}
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("imagebuild: cpio %s: %w", e.Path, err)
		}
	}
	return cpio.WriteTrailer(rw)
}

func cpioMode(m fs.FileMode) uint64 {
	v := uint64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= cpio.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= cpio.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= cpio.S_ISVTX
	}
	switch {
	case m.IsDir():
		v |= cpio.S_IFDIR
	case m&fs.ModeSymlink != 0:
		v |= cpio.S_IFLNK
	case m&fs.ModeCharDevice != 0:
		v |= cpio.S_IFCHR
	case m&fs.ModeDevice != 0:
		v |= cpio.S_IFBLK
	default:
		v |= cpio.S_IFREG
	}
	return v
}

// writeDir applies the plan to a root directory (as root: owners and
// device nodes need it). Existing files are replaced.
func (p fsPlan) writeDir(root string) error {
	for _, e := range p.sorted() {
		dst := filepath.Join(root, e.Path)
		var err error
		switch {
		case e.Mode.IsDir():
			err = os.MkdirAll(dst, e.Mode.Perm())
		case e.Mode&fs.ModeSymlink != 0:
			os.Remove(dst)
			err = os.Symlink(e.Link, dst)
		case e.Mode&fs.ModeDevice != 0:
			os.Remove(dst)
			err = unix.Mknod(dst, unix.S_IFCHR|uint32(e.Mode.Perm()), int(unix.Mkdev(uint32(e.Major), uint32(e.Minor))))
		case e.Src != "":
			err = copyFile(e.Src, dst, e.Mode.Perm())
		default:
			os.Remove(dst)
			err = os.WriteFile(dst, e.Data, e.Mode.Perm())
		}
		if err != nil {
			return fmt.Errorf("imagebuild: write %s: %w", e.Path, err)
		}
		if err := os.Lchown(dst, e.UID, e.GID); err != nil {
			return fmt.Errorf("imagebuild: chown %s: %w", e.Path, err)
		}
		if e.Mode&fs.ModeSymlink == 0 {
			if err := os.Chmod(dst, e.Mode.Perm()|e.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyFile copies a regular file (replacing dst).
func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies a file or a directory tree into the plan at dst.
func copyTree(src, dst string, perm fs.FileMode, uid, gid int) (fsPlan, error) {
	var p fsPlan
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		if perm != 0 && !d.IsDir() {
			mode = perm
		}
		switch {
		case d.IsDir():
			p = append(p, dirEntry(target, mode|0o700, uid, gid))
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			p = append(p, fsEntry{Path: target, Mode: fs.ModeSymlink | 0o777, UID: uid, GID: gid, Link: link})
		case info.Mode().IsRegular():
			p = append(p, fsEntry{Path: target, Mode: mode, UID: uid, GID: gid, Src: path})
		default:
			return fmt.Errorf("%s: not a regular file, directory or symlink", path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("imagebuild: copy %s: %w", src, err)
	}
	if len(p) == 0 {
		return nil, errors.New("imagebuild: copy " + src + ": nothing to copy")
	}
	return p, nil
}
