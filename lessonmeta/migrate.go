package lessonmeta

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// NoteKind says what a migration did with a piece of the old file.
type NoteKind string

// Note kinds.
const (
	NoteMapped  NoteKind = "mapped"  // carried over, possibly renamed or converted
	NoteDropped NoteKind = "dropped" // has no place in the current format
	NoteFilled  NoteKind = "filled"  // the current format needs it; a stand-in was chosen
)

// Note is one line of a migration report.
type Note struct {
	File    string
	Pos     Position
	Field   string // field path in the old file
	Kind    NoteKind
	Message string
}

// String formats the note as `FILE:LINE:COL: KIND: FIELD: MESSAGE`.
func (n Note) String() string {
	s := fmt.Sprintf("%s:%d:%d: %s: ", n.File, n.Pos.Line, n.Pos.Column, n.Kind)
	if n.Field != "" {
		s += n.Field + ": "
	}
	return s + n.Message
}

// Rename is a file the converted lesson expects under a new name (paths
// relative to the lesson directory, with slashes).
type Rename struct {
	From, To string
}

// Migration is a legacy lesson converted to the current format.
type Migration struct {
	From   Format
	Lesson *RawLesson
	// Notes report what was mapped, dropped or filled in, in file order.
	Notes []Note
	// Renames are the files to move so the converted lesson finds its
	// guides and configs. Stage directories are renumbered from 0: every
	// other file under an old stage directory moves with it.
	Renames []Rename
	// Warnings are decoding problems that did not stop the migration
	// (unknown keys, for instance).
	Warnings []*Problem
}

// YAML renders the converted lesson as a current-format lesson.meta.yaml.
func (m *Migration) YAML() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("---\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m.Lesson); err != nil {
		return nil, fmt.Errorf("lessonmeta: encode migrated lesson: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Migrate reads a lesson metafile of any known format (auto-detected:
// Syringe v0.1 and v0.3 syringe.yaml, Syringe v0.4/v0.5 and current
// lesson.meta.yaml) and converts it to the current format, reporting what
// was mapped, dropped or filled in. A current-format file is returned as
// parsed. Configuration paths that escape the lesson directory are refused
// ([ErrUnsafePath]).
func Migrate(file string, data []byte) (*Migration, error) {
	var probs problems
	root := parseYAML(file, data, &probs)
	if root == nil {
		return nil, probs.err()
	}
	mg := &migrator{file: file, probs: &probs, m: &Migration{From: detectFormat(root), Lesson: &RawLesson{}}}
	switch mg.m.From {
	case FormatCurrent:
		raw, err := Parse(file, data, Options{})
		if err != nil {
			return nil, err
		}
		mg.m.Lesson = raw
		mg.m.Notes = append(mg.m.Notes, Note{File: file, Pos: Position{1, 1}, Kind: NoteMapped, Message: "already in the current format; nothing to convert"})
	case FormatSyringeV01:
		var r rawV01
		if !mg.decode(data, &r) {
			return nil, probs.err()
		}
		if mg.withinLimits(len(r.Stages), len(r.Devices)+len(r.Utilities)+len(r.Blackboxes)) {
			mg.v01(&r)
		}
	default:
		var r rawSyringe
		if !mg.decode(data, &r) {
			return nil, probs.err()
		}
		if mg.withinLimits(len(r.Stages), len(r.Devices)+len(r.Utilities)+len(r.Blackboxes)+len(r.Endpoints)) {
			mg.syringe(&r)
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	mg.m.Warnings = probs.warnings()
	slices.SortStableFunc(mg.m.Notes, func(a, b Note) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
	return mg.m, nil
}

type migrator struct {
	file  string
	src   *source
	probs *problems
	m     *Migration
}

func (mg *migrator) decode(data []byte, out any) bool {
	src, _, ok := decodeFile(mg.file, data, out, false, mg.probs)
	mg.src = src
	return ok
}

// withinLimits refuses lessons beyond MaxStages or MaxEndpoints, whose
// per-stage, per-endpoint renames would be huge.
func (mg *migrator) withinLimits(stages, endpoints int) bool {
	if stages <= MaxStages && endpoints <= MaxEndpoints {
		return true
	}
	mg.probs.add(&Problem{File: mg.file, Pos: Position{1, 1}, Kind: ErrInvalid,
		Message: fmt.Sprintf("%d stages and %d endpoints; endpointkit handles at most %d and %d", stages, endpoints, MaxStages, MaxEndpoints)})
	return false
}

func (mg *migrator) note(kind NoteKind, field, format string, args ...any) {
	mg.m.Notes = append(mg.m.Notes, Note{File: mg.file, Pos: mg.src.at(field), Field: field, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

func (mg *migrator) rename(from, to string) {
	if from != to {
		mg.m.Renames = append(mg.m.Renames, Rename{From: from, To: to})
	}
}

// header maps the lesson-level fields every Syringe format shares.
func (mg *migrator) header(name, slug, category, tier, diagram, video, description string, tierDefault string) {
	out := mg.m.Lesson
	out.Name = name
	out.Diagram, out.Video = diagram, video
	if diagram != "" {
		mg.note(NoteMapped, firstPresent(mg.src, "lessonDiagram", "lessondiagram"), "is now diagram")
	}
	if video != "" {
		mg.note(NoteMapped, firstPresent(mg.src, "lessonVideo", "lessonvideo"), "is now video")
	}
	mg.note(NoteMapped, "lessonName", "is now name")
	from := slug
	if from == "" {
		from = name
	}
	out.Slug = slugify(from)
	if out.Slug == "" {
		out.Slug = "lesson"
	}
	if slug == "" {
		mg.note(NoteFilled, "lessonName", "slug %q made from the name (slugs replaced numeric lesson IDs)", out.Slug)
	} else if out.Slug != slug {
		mg.note(NoteMapped, "slug", "%q is now %q (lower-case letters and hyphens only)", slug, out.Slug)
	}
	mg.note(NoteDropped, firstPresent(mg.src, "lessonId", "lessonID"), "numeric lesson IDs are gone; the slug identifies the lesson")
	out.Category = category
	if !slices.Contains([]string{"fundamentals", "tools", "workflows"}, category) {
		out.Category = map[string]string{"verification": "workflows", "troubleshooting": "workflows",
			"configuration": "tools", "introductory": "fundamentals"}[category]
		if out.Category == "" {
			out.Category = "fundamentals"
		}
		mg.note(NoteMapped, "category", "%q is not a current category; using %q", category, out.Category)
	}
	out.Tier = tier
	if tier == "" {
		out.Tier = tierDefault
		mg.note(NoteFilled, "", "tier %q (the format had none)", out.Tier)
	}
	out.Description = description
	if strings.TrimSpace(description) == "" {
		out.Description = name
		mg.note(NoteFilled, "lessonName", "description set to the name; write a real one")
	}
	out.ShortDescription = name
	mg.note(NoteFilled, "lessonName", "shortDescription set to the name; shorten it to one or two words")
}

func firstPresent(src *source, fields ...string) string {
	for _, f := range fields {
		if src.has(f) {
			return f
		}
	}
	return fields[0]
}

// legacyEndpoint converts a device, utility or blackbox.
func (mg *migrator) legacyEndpoint(field, kind, name, image string, ports []int) RawEndpoint {
	ep := RawEndpoint{Name: name, Image: imageFromRef(image)}
	if ep.Image != image {
		mg.note(NoteMapped, field+".image", "container reference %q is now the image slug %q (images/%s/image.meta.yaml)", image, ep.Image, ep.Image)
	}
	switch kind {
	case "devices":
		ep.ConfigurationType = string(ConfigNapalm)
		mg.note(NoteMapped, field, "device %q is an endpoint configured by napalm (driver junos, as Syringe's configurator assumed) with an ssh presentation on port 22", name)
	case "utilities":
		mg.note(NoteMapped, field, "utility %q is an endpoint with an ssh presentation on port 22", name)
	default:
		mg.note(NoteMapped, field, "blackbox %q is an endpoint without presentations; its ports are additionalPorts", name)
	}
	if kind != "blackboxes" {
		ep.Presentations = []RawPresentation{{Name: "cli", Port: 22, Type: "ssh"}}
	}
	for _, p := range ports {
		if p != 22 || kind == "blackboxes" {
			ep.AdditionalPorts = append(ep.AdditionalPorts, p)
		}
	}
	if kind == "blackboxes" && len(ports) == 0 {
		mg.note(NoteDropped, field, "blackbox %q has no ports; give it additionalPorts or a presentation", name)
	}
	return ep
}

func (mg *migrator) v01(r *rawV01) {
	tierDefault := "prod"
	if r.Disabled {
		tierDefault = "local"
		mg.note(NoteMapped, "disabled", "a disabled lesson gets tier local")
	}
	mg.header(r.LessonName, "", r.Category, r.Tier, r.LessonDiagram, r.LessonVideo, "", tierDefault)
	if r.TopologyType != "" {
		mg.note(NoteDropped, "topologyType", "connections alone describe the topology")
	}
	// Stages: a mapping keyed by 1-based number.
	type stageKey struct {
		id  int
		key string
	}
	var keys []stageKey
	for k := range r.Stages {
		id, err := strconv.Atoi(k)
		if err != nil || id < 0 {
			mg.probs.add(&Problem{File: mg.file, Pos: mg.src.at("stages." + k), Field: "stages." + k, Kind: ErrInvalid,
				Message: "a Syringe v0.1 stage key must be the stage number"})
			continue
		}
		keys = append(keys, stageKey{id, k})
	}
	slices.SortFunc(keys, func(a, b stageKey) int { return a.id - b.id })
	out := mg.m.Lesson
	devices := map[string]bool{}
	for _, d := range r.Devices {
		devices[d.Name] = true
	}
	for i, k := range keys {
		st := r.Stages[k.key]
		f := "stages." + k.key
		out.Stages = append(out.Stages, RawStage{Description: st.Description, GuideType: string(GuideMarkdown)})
		mg.note(NoteMapped, f, "stage %d is stages[%d]: directory stage%d/ becomes stage%d/", k.id, i, k.id, i)
		mg.rename(fmt.Sprintf("stage%d/guide.md", k.id), fmt.Sprintf("stage%d/guide.md", i))
		if st.LabGuide != "" {
			mg.note(NoteDropped, f+".labguide", "guide URLs are gone; the guide is stage%d/guide.md", i)
		}
		if st.IframeResource != nil {
			mg.note(NoteDropped, f+".iframeresource", "iframe resources are gone; use an http presentation on an endpoint")
		}
		if st.Notebook {
			mg.note(NoteDropped, f+".notebook", "use guideType: jupyter with stage%d/guide.ipynb", i)
		}
		for ep, p := range st.Configs {
			if !filepath.IsLocal(filepath.FromSlash(p)) {
				mg.probs.add(&Problem{File: mg.file, Pos: mg.src.at(f + ".configs." + ep), Field: f + ".configs." + ep, Kind: ErrUnsafePath,
					Message: fmt.Sprintf("%q is not a path inside the lesson directory", p)})
			}
			if !devices[ep] {
				mg.note(NoteDropped, f+".configs."+ep, "%q is not a device; Syringe never applied this file", ep)
			}
		}
		for _, d := range r.Devices {
			from := st.Configs[d.Name]
			if from == "" || !filepath.IsLocal(filepath.FromSlash(from)) {
				from = fmt.Sprintf("stage%d/configs/%s.txt", k.id, d.Name)
			}
			mg.rename(from, fmt.Sprintf("stage%d/configs/%s-junos.txt", i, d.Name))
		}
	}
	for _, list := range []struct {
		kind string
		eps  []rawV01Endpoint
	}{{"devices", r.Devices}, {"utilities", r.Utilities}, {"blackboxes", r.Blackboxes}} {
		for j, e := range list.eps {
			f := fmt.Sprintf("%s[%d]", list.kind, j)
			out.Endpoints = append(out.Endpoints, mg.legacyEndpoint(f, list.kind, e.Name, e.Image, e.Ports))
			if e.SSHUser != "" || e.SSHPassword != "" {
				mg.note(NoteDropped, f+".sshuser", "credentials belong to the image's image.meta.yaml (sshUser, sshPassword)")
			}
		}
	}
	mg.connections(r.Connections)
}

func (mg *migrator) connections(cs []RawConnection) {
	mg.m.Lesson.Connections = cs
	if len(cs) > 0 {
		mg.note(NoteMapped, "connections", "kept as they are (a, b, subnet)")
	}
}

func (mg *migrator) syringe(r *rawSyringe) {
	description := r.Description
	mg.header(r.LessonName, r.Slug, r.Category, r.Tier, r.LessonDiagram, r.LessonVideo, description, "prod")
	out := mg.m.Lesson
	out.Tags = r.Tags
	if len(r.Prereqs) > 0 {
		mg.note(NoteDropped, "prereqs", "prerequisites were lesson IDs %v; list the prerequisite lessons' slugs instead", r.Prereqs)
	}
	if r.Collection != "" {
		if slugRE.MatchString(r.Collection) {
			out.Collection = r.Collection
		} else {
			mg.note(NoteDropped, "collection", "%q is not a collection slug", r.Collection)
		}
	}
	// Stages: a list with 1-based ids; the current format numbers by
	// position from 0.
	order := make([]int, len(r.Stages))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return r.Stages[a].ID - r.Stages[b].ID })
	stageIDs := make([]int, len(order))
	for i, k := range order {
		st := r.Stages[k]
		f := fmt.Sprintf("stages[%d]", k)
		stageIDs[i] = st.ID
		rs := RawStage{Description: st.Description, GuideType: string(GuideMarkdown)}
		mg.note(NoteMapped, f, "stage id %d is stages[%d]: directory stage%d/ becomes stage%d/", st.ID, i, st.ID, i)
		if st.JupyterLabGuide {
			rs.GuideType = string(GuideJupyter)
			mg.note(NoteMapped, f+".jupyterLabGuide", "is now guideType: jupyter")
			mg.rename(fmt.Sprintf("stage%d/notebook.ipynb", st.ID), fmt.Sprintf("stage%d/guide.ipynb", i))
		} else {
			mg.rename(fmt.Sprintf("stage%d/guide.md", st.ID), fmt.Sprintf("stage%d/guide.md", i))
		}
		if st.VerifyCompleteness || st.VerifyObjective != "" {
			mg.note(NoteDropped, f+".verifyCompleteness", "stage verification was removed in antidote-core v0.6")
		}
		out.Stages = append(out.Stages, rs)
	}
	for _, list := range []struct {
		kind string
		eps  []rawV03Endpoint
	}{{"devices", r.Devices}, {"utilities", r.Utilities}, {"blackboxes", r.Blackboxes}} {
		for j, e := range list.eps {
			out.Endpoints = append(out.Endpoints, mg.legacyEndpoint(fmt.Sprintf("%s[%d]", list.kind, j), list.kind, e.Name, e.Image, e.Ports))
			if list.kind == "devices" {
				for i, id := range stageIDs {
					mg.rename(fmt.Sprintf("stage%d/configs/%s.txt", id, e.Name), fmt.Sprintf("stage%d/configs/%s-junos.txt", i, e.Name))
				}
			}
		}
	}
	for j, e := range r.Endpoints {
		out.Endpoints = append(out.Endpoints, mg.v04Endpoint(fmt.Sprintf("endpoints[%d]", j), e, stageIDs))
	}
	for j, fr := range r.IframeResources {
		f := fmt.Sprintf("iframeResources[%d]", j)
		k := slices.IndexFunc(out.Endpoints, func(e RawEndpoint) bool { return e.Name == fr.Ref })
		if k < 0 {
			mg.note(NoteDropped, f, "refers to %q, which is not an endpoint", fr.Ref)
			continue
		}
		out.Endpoints[k].Presentations = append(out.Endpoints[k].Presentations, RawPresentation{Name: "web", Port: fr.Port, Type: "http"})
		mg.note(NoteMapped, f, "is an http presentation \"web\" on port %d of %q (the path %q is dropped)", fr.Port, fr.Ref, fr.Path)
	}
	mg.connections(r.Connections)
}

func (mg *migrator) v04Endpoint(f string, e rawV04Endpoint, stageIDs []int) RawEndpoint {
	ep := RawEndpoint{Name: e.Name, Image: imageFromRef(e.Image), AdditionalPorts: e.AdditionalPorts}
	if ep.Image != e.Image {
		mg.note(NoteMapped, f+".image", "container reference %q is now the image slug %q", e.Image, ep.Image)
	}
	if e.Host != "" {
		mg.note(NoteDropped, f+".host", "removed in antidote-core v0.6")
	}
	for k, p := range e.Presentations {
		if p.Type == "vnc" {
			mg.note(NoteDropped, fmt.Sprintf("%s.presentations[%d]", f, k), "vnc presentations were never implemented")
			continue
		}
		ep.Presentations = append(ep.Presentations, p)
	}
	ct := e.ConfigurationType
	ext := ""
	switch {
	case ct == "":
	case ct == "python" || ct == "ansible":
		ep.ConfigurationType = ct
		ext = map[string]string{"python": ".py", "ansible": ".yml"}[ct]
	case strings.HasPrefix(ct, "napalm-") && slices.Contains(NapalmDrivers(), strings.TrimPrefix(ct, "napalm-")):
		ep.ConfigurationType = string(ConfigNapalm)
		driver := strings.TrimPrefix(ct, "napalm-")
		mg.note(NoteMapped, f+".configurationType", "%q is napalm; the driver moves into the file name %s-%s.txt", ct, e.Name, driver)
		for i, id := range stageIDs {
			mg.rename(fmt.Sprintf("stage%d/configs/%s.txt", id, e.Name), fmt.Sprintf("stage%d/configs/%s-%s.txt", i, e.Name, driver))
		}
	default:
		mg.note(NoteDropped, f+".configurationType", "%q has no current equivalent; configure the endpoint another way", ct)
	}
	if ext != "" {
		for i, id := range stageIDs {
			mg.rename(fmt.Sprintf("stage%d/configs/%s%s", id, e.Name, ext), fmt.Sprintf("stage%d/configs/%s%s", i, e.Name, ext))
		}
	}
	return ep
}
