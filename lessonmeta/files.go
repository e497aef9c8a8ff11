package lessonmeta

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit/internal/text"
)

// configCandidates returns the file names in stage<i>/configs/ that may hold
// an endpoint's configuration, with the NAPALM driver each implies.
func configCandidates(t ConfigurationType, ep string) (names, drivers []string) {
	switch t {
	case ConfigPython:
		return []string{ep + ".py"}, []string{""}
	case ConfigAnsible:
		return []string{ep + ".yml", ep + ".yaml"}, []string{"", ""}
	case ConfigNetconf:
		return []string{ep + ".xml"}, []string{""}
	case ConfigSSH:
		return []string{ep + ".sh"}, []string{""}
	case ConfigNapalm:
		for _, d := range NapalmDrivers() {
			names = append(names, ep+"-"+d+".txt")
			drivers = append(drivers, d)
		}
		return names, drivers
	}
	return nil, nil
}

// configPattern describes the expected file name for messages.
func configPattern(t ConfigurationType, ep string) string {
	switch t {
	case ConfigNapalm:
		return ep + "-<driver>.txt (driver: " + strings.Join(NapalmDrivers(), ", ") + ")"
	case ConfigAnsible:
		return ep + ".yml (or " + ep + ".yaml)"
	}
	names, _ := configCandidates(t, ep)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func isRegular(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && st.Mode().IsRegular()
}

// files checks and resolves every stage's guide and every configured
// endpoint's per-stage file. Config files are matched exactly, directly in
// stage<i>/configs/, and resolved per stage.
func (c *checker) files(l *Lesson, fsys fs.FS) {
	l.FilesChecked = true
	for i := range l.Stages {
		s := &l.Stages[i]
		guide := ""
		switch s.GuideType {
		case GuideMarkdown:
			guide = fmt.Sprintf("stage%d/guide.md", i)
		case GuideJupyter:
			guide = fmt.Sprintf("stage%d/guide.ipynb", i)
		default:
			continue // already reported
		}
		if isRegular(fsys, guide) {
			s.Guide = filepath.Join(l.Dir, filepath.FromSlash(guide))
			c.confined(l, fsys, fmt.Sprintf("stages[%d].guideType", i), guide, s.Guide, 0)
			continue
		}
		msg := fmt.Sprintf("stage %d's guide %s is missing (guideType %s)", i, guide, s.GuideType)
		if st, err := fs.Stat(fsys, fmt.Sprintf("stage%d", i)); err != nil || !st.IsDir() {
			msg += fmt.Sprintf("; the lesson has no stage%d/ directory", i)
		} else if other := strings.TrimSuffix(guide, path.Ext(guide)); isRegular(fsys, other+".md") || isRegular(fsys, other+".ipynb") {
			msg += "; the other guide type's file is there: fix guideType"
		}
		c.errf(ErrMissingFile, fmt.Sprintf("stages[%d].guideType", i), "%s", msg)
	}
	listings := map[int][]fs.DirEntry{}
	for i := range l.Endpoints {
		ep := &l.Endpoints[i]
		names, drivers := configCandidates(ep.ConfigurationType, ep.Name)
		if len(names) == 0 || ep.Name == "" {
			continue
		}
		field := fmt.Sprintf("endpoints[%d].configurationType", i)
		for stage := range l.Stages {
			dir := fmt.Sprintf("stage%d/configs", stage)
			var found []ConfigFile
			for k, n := range names {
				rel := dir + "/" + n
				if isRegular(fsys, rel) {
					found = append(found, ConfigFile{Stage: stage, Rel: rel, Path: filepath.Join(l.Dir, filepath.FromSlash(rel)), Driver: drivers[k]})
				}
			}
			switch len(found) {
			case 1:
				if c.confined(l, fsys, field, found[0].Rel, found[0].Path, MaxConfigSize) {
					ep.Configs = append(ep.Configs, found[0])
					continue
				}
			case 0:
				if _, ok := listings[stage]; !ok {
					listings[stage], _ = fs.ReadDir(fsys, dir)
				}
				c.errf(ErrMissingFile, field, "%s configuration of %q needs %s/%s for stage %d%s",
					ep.ConfigurationType, ep.Name, dir, configPattern(ep.ConfigurationType, ep.Name), stage,
					nearMisses(fsys, dir, ep.Name, listings[stage]))
			default:
				var rels []string
				for _, f := range found {
					rels = append(rels, f.Rel)
				}
				c.errf(ErrAmbiguous, field, "stage %d has %d configuration files for %q (%s); keep one",
					stage, len(found), ep.Name, strings.Join(rels, ", "))
			}
			ep.Configs = append(ep.Configs, ConfigFile{Stage: stage})
		}
	}
}

// nearMisses describes files in dir that look meant for endpoint ep but do
// not match, including ones in sub-directories (which antidote-core's
// recursive walk accepted and endpointkit does not).
func nearMisses(fsys fs.FS, dir, ep string, entries []fs.DirEntry) string {
	if entries == nil {
		if _, err := fs.Stat(fsys, dir); errors.Is(err, fs.ErrNotExist) {
			return "; " + dir + "/ does not exist"
		}
	}
	var near []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ep) {
			continue
		}
		if e.IsDir() {
			sub, _ := fs.ReadDir(fsys, dir+"/"+n)
			for _, s := range sub {
				if strings.HasPrefix(s.Name(), ep) {
					near = append(near, n+"/"+s.Name()+" (config files must sit directly in "+dir+"/)")
				}
			}
			continue
		}
		near = append(near, n)
	}
	if len(near) == 0 {
		return ""
	}
	return "; " + dir + "/ has " + strings.Join(near, ", ")
}

// images asks src for each endpoint's image and warns, once per image at
// its first use, about the ones it does not have.
func (c *checker) images(l *Lesson, src ImageSource) {
	users := map[string][]int{}
	var order []string
	for i, ep := range l.Endpoints {
		if ep.Image == "" || !imageSlugRE.MatchString(ep.Image) {
			continue
		}
		if _, ok := users[ep.Image]; !ok {
			order = append(order, ep.Image)
		}
		users[ep.Image] = append(users[ep.Image], i)
	}
	for _, slug := range order {
		im, err := src.Image(slug)
		if err == nil {
			if im.APIs != nil {
				c.checkAPIs(l, slug, im.APIs)
			}
			continue
		}
		var names []string
		for _, i := range users[slug] {
			names = append(names, l.Endpoints[i].Name)
		}
		field := fmt.Sprintf("endpoints[%d].image", users[slug][0])
		if errors.Is(err, ErrNoImage) {
			c.warnf(ErrReference, field, "image %q (used by %s) has no image.meta.yaml (searched: %s); the lesson is valid, but launching it needs that image",
				slug, strings.Join(names, ", "), describeSource(src))
		} else {
			c.warnf(ErrReference, field, "image %q (used by %s): %s", slug, strings.Join(names, ", "), summary(err.Error()))
		}
	}
}

func describeSource(src ImageSource) string {
	if s, ok := src.(fmt.Stringer); ok {
		return s.String()
	}
	return "the image catalog"
}

// summary is the first line of a message and how many more it has.
func summary(s string) string {
	if n := strings.Count(s, "\n"); n > 0 {
		return text.FirstLine(s) + fmt.Sprintf(" (and %d more)", n)
	}
	return s
}
