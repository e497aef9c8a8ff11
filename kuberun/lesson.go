package kuberun

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/kubeplan"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrLessonTooLarge: the lesson directory's files are more than a
// ConfigMap carries (kubeplan.MaxLessonFiles); it goes to the pods as a
// lesson-content image, which needs a registry.
var ErrLessonTooLarge = errors.New("lesson directory too large for a ConfigMap")

// LessonFiles reads the lesson directory's regular files for its
// ConfigMap, in path order. A symbolic link inside the lesson is delivered
// as a copy of the file it names (a ConfigMap has no links; the lesson
// loader refuses links that leave the lesson); empty directories are left
// out. More than kubeplan.MaxLessonFiles bytes is ErrLessonTooLarge.
func LessonFiles(dir string) ([]kubeplan.LessonFile, error) {
	var files []kubeplan.LessonFile
	total := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := os.Stat(p) // through a link
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		if total += int(st.Size()); total > kubeplan.MaxLessonFiles {
			return fmt.Errorf("%w: %s has more than %d bytes of files", ErrLessonTooLarge, dir, kubeplan.MaxLessonFiles)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, kubeplan.LessonFile{Path: filepath.ToSlash(rel), Mode: st.Mode().Perm(), Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// lessonImage makes the lesson-content image of a lesson directory too
// large for a ConfigMap (package kubeplan's init container copies it into
// each pod) and, with push, pushes it as REGISTRY/PATH/lesson-SLUG unless
// the registry has it. The image is reproducible: the same files give the
// same digest.
func (o *Options) lessonImage(ctx context.Context, slug, dir string, push bool, report func(string)) (string, error) {
	img, err := LessonImage(dir, o.Build.Busybox)
	if err != nil {
		return "", fmt.Errorf("lesson %s: content image: %w", slug, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	repo := strings.TrimSuffix(o.Registry, "/") + "/lesson-" + slug
	ref := repo + "@" + d.String()
	if !push {
		return ref, nil
	}
	if _, err := imagebuild.Lookup(ctx, ref, o.Push); err == nil {
		return ref, nil
	} else if !errors.Is(err, imagebuild.ErrNotInRegistry) {
		return "", fmt.Errorf("lesson %s: %w", slug, err)
	}
	report(fmt.Sprintf("pushing the lesson content to %s", repo))
	// Through an OCI layout: imagebuild.Push's transport rules and
	// credentials apply to it as to the endpoint images.
	tmp, err := os.MkdirTemp("", "ek-lesson-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return "", err
	}
	if err := lp.AppendImage(img); err != nil {
		return "", err
	}
	res, err := imagebuild.Push(ctx, tmp, repo+":latest", imagebuildPushNoState(o.Push))
	if err != nil {
		return "", fmt.Errorf("lesson %s: %w", slug, err)
	}
	if res.Digest != d.String() {
		return "", fmt.Errorf("lesson %s: pushed %s, made %s", slug, res.Digest, d)
	}
	return ref, nil
}

// imagebuildPushNoState keeps the lesson images out of the push state
// (their blobs are small and never shared).
func imagebuildPushNoState(o imagebuild.PushOptions) imagebuild.PushOptions {
	o.StateFile = "-"
	return o
}

// lessonEpoch dates every file of a lesson-content image, so the same
// files give the same digest.
var lessonEpoch = time.Unix(0, 0).UTC()

// LessonImage is the lesson-content image of a lesson directory: a static
// busybox (Debian's busybox-static, for the init container's cp) and the
// directory's files under kubeplan.LessonImageDir, reproducible (files
// sorted, dated 1970, owned by root).
func LessonImage(dir, busybox string) (v1.Image, error) {
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%w (the init container copies with a static busybox: install busybox-static)", err)
	}
	var tools bytes.Buffer
	tw := tar.NewWriter(&tools)
	put := func(h *tar.Header, data []byte) {
		h.ModTime, h.Uid, h.Gid, h.Format = lessonEpoch, 0, 0, tar.FormatPAX
		tw.WriteHeader(h)
		tw.Write(data)
	}
	put(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	put(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	put(&tar.Header{Name: "bin/cp", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	put(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var content bytes.Buffer
	tw = tar.NewWriter(&content)
	root := strings.TrimPrefix(kubeplan.LessonImageDir, "/")
	put(&tar.Header{Name: root + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		h := &tar.Header{Name: root + "/" + filepath.ToSlash(rel), Mode: int64(st.Mode().Perm())}
		switch {
		case st.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			put(h, nil)
		case st.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			put(h, data)
		case st.Mode()&fs.ModeSymlink != 0:
			// The lesson loader refuses links that leave the lesson;
			// inside it they keep their meaning.
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
			put(h, nil)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, raw := range [][]byte{tools.Bytes(), content.Bytes()} {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: lessonEpoch}, CreatedBy: "endpointkit: lesson content"}}); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: lessonEpoch}
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Entrypoint = []string{"/bin/cp"}
	return mutate.ConfigFile(img, cf)
}
