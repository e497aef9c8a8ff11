package lessonmeta

import "gopkg.in/yaml.v3"

// Format is a lesson metafile format.
type Format string

// Formats [Migrate] reads. Only FormatCurrent is accepted by [Parse].
const (
	FormatCurrent    Format = "antidote-core v0.6+"
	FormatSyringeV01 Format = "Syringe v0.1 (syringe.yaml)"
	FormatSyringeV03 Format = "Syringe v0.1.4-v0.3 (syringe.yaml)"
	FormatSyringeV04 Format = "Syringe v0.4/v0.5 (lesson.meta.yaml)"
)

// detectFormat tells the format of a parsed metafile from its top-level
// keys: numeric lessonId/lessonID, lessonName and the devices / utilities
// / blackboxes lists only exist in Syringe formats; v0.1 keyed stages by
// number in a mapping; v0.4 unified the lists into endpoints.
func detectFormat(root *yaml.Node) Format {
	if root == nil || root.Kind != yaml.MappingNode {
		return FormatCurrent
	}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		keys[root.Content[i].Value] = root.Content[i+1]
	}
	legacy := false
	for _, k := range []string{"lessonId", "lessonID", "lessonName", "devices", "utilities", "blackboxes"} {
		if _, ok := keys[k]; ok {
			legacy = true
		}
	}
	if !legacy {
		return FormatCurrent
	}
	stages := keys["stages"]
	for stages != nil && stages.Kind == yaml.AliasNode {
		stages = stages.Alias
	}
	if _, ok := keys["lessonID"]; ok || (stages != nil && stages.Kind == yaml.MappingNode) {
		return FormatSyringeV01
	}
	if _, ok := keys["endpoints"]; ok {
		return FormatSyringeV04
	}
	return FormatSyringeV03
}

// rawV01 is a Syringe v0.1 syringe.yaml.
type rawV01 struct {
	LessonName    string                 `yaml:"lessonName"`
	LessonID      int                    `yaml:"lessonID"`
	Disabled      bool                   `yaml:"disabled"`
	Tier          string                 `yaml:"tier"`
	Category      string                 `yaml:"category"`
	TopologyType  string                 `yaml:"topologyType"`
	LessonDiagram string                 `yaml:"lessondiagram"`
	LessonVideo   string                 `yaml:"lessonvideo"`
	Devices       []rawV01Endpoint       `yaml:"devices"`
	Utilities     []rawV01Endpoint       `yaml:"utilities"`
	Blackboxes    []rawV01Endpoint       `yaml:"blackboxes"`
	Connections   []RawConnection        `yaml:"connections"`
	Stages        map[string]rawV01Stage `yaml:"stages"`
}

type rawV01Endpoint struct {
	Name        string `yaml:"name"`
	Image       string `yaml:"image"`
	SSHUser     string `yaml:"sshuser"`
	SSHPassword string `yaml:"sshpassword"`
	Ports       []int  `yaml:"ports"`
}

type rawV01Stage struct {
	Description    string            `yaml:"description"`
	LabGuide       string            `yaml:"labguide"`
	Configs        map[string]string `yaml:"configs"`
	IframeResource *rawV01Iframe     `yaml:"iframeresource"`
	Notebook       bool              `yaml:"notebook"`
}

type rawV01Iframe struct {
	Name     string `yaml:"name"`
	Protocol string `yaml:"protocol"`
	URI      string `yaml:"uri"`
	Port     int    `yaml:"port"`
}

// rawSyringe is a Syringe v0.1.4-v0.5 file: v0.3 has devices / utilities /
// blackboxes, v0.4 and v0.5 have endpoints.
type rawSyringe struct {
	LessonName      string            `yaml:"lessonName"`
	LessonID        int               `yaml:"lessonId"`
	Category        string            `yaml:"category"`
	Tier            string            `yaml:"tier"`
	LessonDiagram   string            `yaml:"lessonDiagram"`
	LessonVideo     string            `yaml:"lessonVideo"`
	Description     string            `yaml:"description"`
	Slug            string            `yaml:"slug"`
	Prereqs         []int             `yaml:"prereqs"`
	Tags            []string          `yaml:"tags"`
	Collection      string            `yaml:"collection"`
	Stages          []rawSyringeStage `yaml:"stages"`
	Devices         []rawV03Endpoint  `yaml:"devices"`
	Utilities       []rawV03Endpoint  `yaml:"utilities"`
	Blackboxes      []rawV03Endpoint  `yaml:"blackboxes"`
	IframeResources []rawV03Iframe    `yaml:"iframeResources"`
	Endpoints       []rawV04Endpoint  `yaml:"endpoints"`
	Connections     []RawConnection   `yaml:"connections"`
}

type rawSyringeStage struct {
	ID                 int    `yaml:"id"`
	Description        string `yaml:"description"`
	JupyterLabGuide    bool   `yaml:"jupyterLabGuide"`
	VerifyCompleteness bool   `yaml:"verifyCompleteness"`
	VerifyObjective    string `yaml:"verifyObjective"`
}

type rawV03Endpoint struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []int  `yaml:"ports"`
}

type rawV03Iframe struct {
	Ref      string `yaml:"ref"`
	Protocol string `yaml:"protocol"`
	Path     string `yaml:"path"`
	Port     int    `yaml:"port"`
}

type rawV04Endpoint struct {
	Name              string            `yaml:"name"`
	Image             string            `yaml:"image"`
	ConfigurationType string            `yaml:"configurationType"`
	AdditionalPorts   []int             `yaml:"additionalPorts"`
	Presentations     []RawPresentation `yaml:"presentations"`
	Host              string            `yaml:"host"`
}
