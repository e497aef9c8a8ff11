package lessonmeta

// The Raw types are the metafiles exactly as written: what Parse decodes
// (keeping positions aside), what Migrate produces and what the JSON Schema
// is generated from. Nothing here is validated or defaulted; see [Lesson],
// [Image], [Collection] and [CurriculumMeta] for the checked forms.

// RawLesson is lesson.meta.yaml as written (antidote-core v0.6/v0.7 format
// plus the endpointkit extensions).
type RawLesson struct {
	Name             string          `yaml:"name" jsonschema:"required,minLength=1" jsonschema_description:"Human-readable title."`
	Slug             string          `yaml:"slug" jsonschema:"required,minLength=1,pattern=^[a-z-]*$" jsonschema_description:"Lesson ID: lower-case letters and hyphens."`
	Category         string          `yaml:"category" jsonschema:"required,enum=fundamentals,enum=tools,enum=workflows"`
	Diagram          string          `yaml:"diagram,omitempty" jsonschema_description:"URL of a diagram."`
	Video            string          `yaml:"video,omitempty" jsonschema_description:"URL of a video."`
	Tier             string          `yaml:"tier" jsonschema:"required,enum=prod,enum=ptr,enum=local"`
	Collection       string          `yaml:"collection,omitempty" jsonschema_description:"Slug of a collection."`
	Description      string          `yaml:"description" jsonschema:"required,minLength=1"`
	ShortDescription string          `yaml:"shortDescription" jsonschema:"required,minLength=1" jsonschema_description:"One or two words."`
	Prereqs          []string        `yaml:"prereqs,omitempty" jsonschema_description:"Slugs of lessons to take first."`
	Tags             []string        `yaml:"tags,omitempty"`
	Authors          []RawAuthor     `yaml:"authors,omitempty"`
	ReadyDelay       int             `yaml:"readyDelay,omitempty" jsonschema:"minimum=0" jsonschema_description:"Seconds to wait after the first configuration before the lesson is ready."`
	Endpoints        []RawEndpoint   `yaml:"endpoints" jsonschema:"required,minItems=1"`
	Connections      []RawConnection `yaml:"connections,omitempty"`
	Stages           []RawStage      `yaml:"stages" jsonschema:"required,minItems=1" jsonschema_description:"Stage i uses the directory stage<i>/."`

	meta *parsed // positions and problems from Parse; nil for a RawLesson built in code
}

func (*RawLesson) keyHints() map[string]string {
	return map[string]string{
		"lessonName":      `"lessonName" is the Syringe name of "name" (legacy format: convert with lesson migrate)`,
		"lessonId":        `numeric lesson IDs were replaced by "slug" (legacy format: convert with lesson migrate)`,
		"lessonID":        `numeric lesson IDs were replaced by "slug" (legacy format: convert with lesson migrate)`,
		"lessonDiagram":   `"lessonDiagram" is now "diagram"`,
		"lessonVideo":     `"lessonVideo" is now "video"`,
		"lessondiagram":   `"lessondiagram" is now "diagram"`,
		"lessonvideo":     `"lessonvideo" is now "video"`,
		"devices":         `"devices" were replaced by "endpoints" (legacy format: convert with lesson migrate)`,
		"utilities":       `"utilities" were replaced by "endpoints" (legacy format: convert with lesson migrate)`,
		"blackboxes":      `"blackboxes" were replaced by "endpoints" (legacy format: convert with lesson migrate)`,
		"topologyType":    `"topologyType" is gone: connections alone describe the topology`,
		"disabled":        `"disabled" is gone: use tier: local`,
		"iframeResources": `"iframeResources" were replaced by http presentations on an endpoint`,
	}
}

// RawAuthor is one entry of a lesson's authors.
type RawAuthor struct {
	Name string `yaml:"name"`
	Link string `yaml:"link,omitempty"`
}

// RawStage is one entry of a lesson's stages.
type RawStage struct {
	Description string `yaml:"description,omitempty"`
	GuideType   string `yaml:"guideType" jsonschema:"required,enum=markdown,enum=jupyter" jsonschema_description:"markdown: stage<i>/guide.md; jupyter: stage<i>/guide.ipynb."`
	StageVideo  string `yaml:"stageVideo,omitempty"`
}

func (*RawStage) keyHints() map[string]string {
	return map[string]string{
		"id":                 "stage ids are gone: stages are numbered by position from 0 (stage0/, stage1/, …)",
		"jupyterLabGuide":    `"jupyterLabGuide" was replaced by guideType: jupyter`,
		"verifyCompleteness": "stage verification was removed in antidote-core v0.6",
		"verifyObjective":    "stage verification was removed in antidote-core v0.6",
	}
}

// RawEndpoint is one entry of a lesson's endpoints.
type RawEndpoint struct {
	Name              string            `yaml:"name" jsonschema:"required,minLength=1,maxLength=63,pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" jsonschema_description:"DNS label, unique in the lesson."`
	Image             string            `yaml:"image" jsonschema:"required,minLength=1,pattern=^[A-Za-z0-9-]*$" jsonschema_description:"Image slug (images/<slug>/image.meta.yaml)."`
	ConfigurationType string            `yaml:"configurationType,omitempty" jsonschema:"enum=,enum=napalm,enum=python,enum=ansible,enum=netconf,enum=ssh" jsonschema_description:"How each stage configures this endpoint; netconf and ssh are endpointkit extensions."`
	AdditionalPorts   []int             `yaml:"additionalPorts,omitempty" jsonschema:"minimum=1,maximum=65535"`
	Presentations     []RawPresentation `yaml:"presentations,omitempty"`
}

func (*RawEndpoint) keyHints() map[string]string {
	return map[string]string{
		"host":        `"host" was removed in antidote-core v0.6`,
		"ports":       `"ports" is now "additionalPorts" (or a presentation)`,
		"sshuser":     "credentials moved to the image's image.meta.yaml (sshUser)",
		"sshpassword": "credentials moved to the image's image.meta.yaml (sshPassword)",
	}
}

// RawPresentation is one way a learner reaches an endpoint.
type RawPresentation struct {
	Name string `yaml:"name" jsonschema:"required,minLength=1"`
	Port int    `yaml:"port" jsonschema:"required,minimum=1,maximum=65535"`
	Type string `yaml:"type" jsonschema:"required,enum=ssh,enum=http"`
}

// RawConnection is one cable between two endpoints.
type RawConnection struct {
	A      string `yaml:"a" jsonschema:"required,minLength=1"`
	B      string `yaml:"b" jsonschema:"required,minLength=1"`
	Subnet string `yaml:"subnet,omitempty" jsonschema:"pattern=^[0-9A-Fa-f:.]+/[0-9]+$" jsonschema_description:"CIDR; addresses are planned from it (.1 gateway, then .2, .3 in endpoints order)."`
}

// RawImage is images/<slug>/image.meta.yaml as written.
type RawImage struct {
	Slug              string   `yaml:"slug" jsonschema:"required,minLength=1,pattern=^[A-Za-z0-9-]*$"`
	Description       string   `yaml:"description,omitempty"`
	Flavor            string   `yaml:"flavor" jsonschema:"required,enum=trusted,enum=untrusted,enum=legacy"`
	EnableForwarding  bool     `yaml:"enableForwarding,omitempty"`
	NetworkInterfaces []string `yaml:"networkInterfaces,omitempty"`
	SSHUser           string   `yaml:"sshUser" jsonschema:"required,minLength=1"`
	SSHPassword       string   `yaml:"sshPassword" jsonschema:"required,minLength=1"`
	ConfigUser        string   `yaml:"configUser" jsonschema:"required,minLength=1"`
	ConfigPassword    string   `yaml:"configPassword" jsonschema:"required,minLength=1"`
	// Privileged is the antidote-core v0.6 field that flavor replaced; it
	// is read (so older files decode) and ignored with a warning.
	Privileged *bool `yaml:"privileged,omitempty"`
}

// RawCollection is collections/<x>/collection.meta.yaml as written.
type RawCollection struct {
	Slug             string `yaml:"slug" jsonschema:"required,minLength=1,pattern=^[a-z-]*$"`
	Title            string `yaml:"title" jsonschema:"required,minLength=1"`
	Image            string `yaml:"image" jsonschema:"required,minLength=1"`
	Website          string `yaml:"website" jsonschema:"required,minLength=1"`
	ContactEmail     string `yaml:"contactEmail" jsonschema:"required,minLength=1"`
	BriefDescription string `yaml:"briefDescription" jsonschema:"required,minLength=1"`
	LongDescription  string `yaml:"longDescription" jsonschema:"required,minLength=1"`
	Type             string `yaml:"type" jsonschema:"required,enum=vendor,enum=community,enum=consultancy"`
	Tier             string `yaml:"tier" jsonschema:"required,enum=prod,enum=ptr,enum=local"`
}

// RawCurriculum is curriculum.meta.yaml as written.
type RawCurriculum struct {
	Name        string `yaml:"name" jsonschema:"required,minLength=1"`
	Description string `yaml:"description" jsonschema:"required,minLength=1"`
	Website     string `yaml:"website" jsonschema:"required,minLength=1"`
	AVer        string `yaml:"aVer" jsonschema:"required,minLength=1" jsonschema_description:"Antidote version the curriculum targets."`
	GitRoot     string `yaml:"gitRoot" jsonschema:"required,minLength=1"`
}
