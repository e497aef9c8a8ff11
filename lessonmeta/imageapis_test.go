package lessonmeta

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUndeclaredAPIWarns: presenting HTTP from, or configuring over
// NETCONF, an image whose manifest declares neither is a warning at the
// lesson line that does it; an image that declares them, or whose APIs
// are unknown (no manifest), gets none.
func TestUndeclaredAPIWarns(t *testing.T) {
	images := t.TempDir()
	meta := "slug: %s\ndescription: x\nflavor: trusted\nsshUser: antidote\nsshPassword: p\nconfigUser: antidote\nconfigPassword: p\n"
	for slug, manifest := range map[string]string{
		"plain":    `{"version": 1, "apis": {"ssh": 22}}`,
		"netconf":  `{"version": 1, "apis": {"ssh": 22, "netconf": 830, "http": [8080]}}`,
		"antidote": "",
	} {
		dir := filepath.Join(images, slug)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, ImageFile), []byte(strings.ReplaceAll(meta, "%s", slug)), 0o644)
		if manifest != "" {
			os.WriteFile(filepath.Join(dir, imageManifestFile), []byte(manifest), 0o644)
		}
	}
	lesson := func(image string) string {
		return strings.NewReplacer("image: utility\n    configurationType: python", "image: "+image+"\n    configurationType: netconf",
			"        type: ssh\n", "        type: ssh\n      - name: web\n        port: 8080\n        type: http\n").Replace(baseLesson)
	}
	fsys := baseFS()
	fsys["stage0/configs/r1.xml"] = fsys["stage0/configs/r1.py"]
	opts := Options{Images: ImageDirs{images}}

	l, err := load(t, lesson("plain"), fsys, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range l.Warnings {
		if strings.Contains(w.Message, "declares no") {
			got = append(got, w.Error())
		}
	}
	want := []string{
		`/lessons/demo/lesson.meta.yaml:11:24: warning: endpoints[0].configurationType: endpoint "r1" is configured over NETCONF (netconf), but image "plain" declares no NETCONF API (it has ssh 22, netconf 0, http []); add apis: {netconf: true} to its recipe`,
		`/lessons/demo/lesson.meta.yaml:18:15: warning: endpoints[0].presentations[1].type: endpoint "r1" presents HTTP on port 8080, but image "plain" declares no HTTP API there (it has ssh 22, netconf 0, http []); add apis: {http: {port: 8080}} to its recipe`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, image := range []string{"netconf", "antidote"} {
		l, err := load(t, lesson(image), fsys, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range l.Warnings {
			if strings.Contains(w.Message, "declares no") {
				t.Errorf("image %s: %v", image, w)
			}
		}
	}
}
