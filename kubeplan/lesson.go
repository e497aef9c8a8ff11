package kubeplan

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LessonConfigMap is the name of the ConfigMap that holds an instance's
// lesson directory when it is delivered by ConfigMap (Options.LessonFiles).
const LessonConfigMap = "lesson"

// MaxLessonFiles is the most file data (bytes) a lesson directory may have
// to be delivered in a ConfigMap: below the API server's 1 MiB limit on a
// ConfigMap, with room for keys and encoding. A larger lesson directory
// needs the lesson-content image (Options.LessonImage).
const MaxLessonFiles = 768 << 10

// LessonFile is one regular file of a lesson directory.
type LessonFile struct {
	// Path is slash-separated and relative to the lesson directory.
	Path string
	// Mode holds the permission bits (0 means 0644).
	Mode fs.FileMode
	Data []byte
}

// lessonConfigMap renders the lesson directory's files as one ConfigMap:
// text files under data, others under binaryData, keyed by position (a
// key cannot hold a path); the pods' volume maps each key to its path.
func (r *renderer) lessonConfigMap() (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: r.meta(LessonConfigMap),
	}
	total := 0
	seen := map[string]bool{}
	for k, f := range r.o.LessonFiles {
		if !validLessonPath(f.Path) {
			return nil, fmt.Errorf("%w: lesson file %q: want a clean relative path inside the lesson directory", ErrInvalid, f.Path)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("%w: lesson file %q given twice", ErrInvalid, f.Path)
		}
		seen[f.Path] = true
		total += len(f.Data)
		if utf8.Valid(f.Data) {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[lessonKey(k)] = string(f.Data)
		} else {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[lessonKey(k)] = f.Data
		}
	}
	if total > MaxLessonFiles {
		return nil, fmt.Errorf("%w: the lesson directory has %d bytes of files, more than a ConfigMap carries (%d): deliver it by lesson-content image (Options.LessonImage)", ErrInvalid, total, MaxLessonFiles)
	}
	return cm, nil
}

// lessonVolumeSource is the pods' view of the lesson ConfigMap: every key
// at its file's path, with its mode.
func (r *renderer) lessonVolumeSource() corev1.VolumeSource {
	items := make([]corev1.KeyToPath, len(r.o.LessonFiles))
	for k, f := range r.o.LessonFiles {
		mode := int32(f.Mode.Perm())
		if mode == 0 {
			mode = 0o644
		}
		items[k] = corev1.KeyToPath{Key: lessonKey(k), Path: f.Path, Mode: &mode}
	}
	return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: LessonConfigMap},
		Items:                items,
	}}
}

// lessonKey is the ConfigMap key of the k-th lesson file.
func lessonKey(k int) string { return fmt.Sprintf("f%03d", k) }

// validLessonPath reports whether p is a clean relative slash path that
// stays inside the lesson directory, as a ConfigMap volume item needs
// (no element may start with "..").
func validLessonPath(p string) bool {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	for _, el := range strings.Split(p, "/") {
		if strings.HasPrefix(el, "..") {
			return false
		}
	}
	return true
}
