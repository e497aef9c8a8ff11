package lessonmeta

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ImageAPIs are the management APIs an image declares (guest ports; 0 or
// empty: not offered). Antidote's image.meta.yaml does not say; an image
// directory built by endpointkit's imagebuild does, in the manifest.json
// beside it.
type ImageAPIs struct {
	SSH     int
	NETCONF int
	HTTP    []int
}

// imageManifestFile is the manifest of a built image directory (package
// vmimage); only its "apis" are read here.
const imageManifestFile = "manifest.json"

// loadImageAPIs reads the APIs from the manifest.json beside an
// image.meta.yaml; nil when there is none.
func loadImageAPIs(metaFile string) (*ImageAPIs, error) {
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(metaFile), imageManifestFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m struct {
		APIs *struct {
			SSH     int   `json:"ssh"`
			NETCONF int   `json:"netconf"`
			HTTP    []int `json:"http"`
		} `json:"apis"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(filepath.Dir(metaFile), imageManifestFile), err)
	}
	if m.APIs == nil {
		return nil, nil
	}
	return &ImageAPIs{SSH: m.APIs.SSH, NETCONF: m.APIs.NETCONF, HTTP: m.APIs.HTTP}, nil
}

// checkAPIs warns about each endpoint of the lesson that presents or is
// configured through an API its image does not declare: an http
// presentation on a port the image serves no HTTP on, NETCONF
// configuration (netconf, napalm with the junos driver) of an image
// without NETCONF, SSH presentation or configuration of an image without
// SSH.
func (c *checker) checkAPIs(l *Lesson, slug string, apis *ImageAPIs) {
	for i, ep := range l.Endpoints {
		if ep.Image != slug {
			continue
		}
		f := fmt.Sprintf("endpoints[%d]", i)
		for j, p := range ep.Presentations {
			pf := fmt.Sprintf("%s.presentations[%d]", f, j)
			switch {
			case p.Type == PresentationHTTP && !slices.Contains(apis.HTTP, p.Port):
				c.warnf(ErrReference, pf+".type", "endpoint %q presents HTTP on port %d, but image %q declares no HTTP API there (%s); add apis: {http: {port: %d}} to its recipe",
					ep.Name, p.Port, slug, describeAPIs(apis), p.Port)
			case p.Type == PresentationSSH && apis.SSH == 0:
				c.warnf(ErrReference, pf+".type", "endpoint %q presents SSH, but image %q declares no SSH API", ep.Name, slug)
			}
		}
		switch needs := configAPI(ep); {
		case needs == "netconf" && apis.NETCONF == 0:
			c.warnf(ErrReference, f+".configurationType", "endpoint %q is configured over NETCONF (%s), but image %q declares no NETCONF API (%s); add apis: {netconf: true} to its recipe",
				ep.Name, ep.ConfigurationType, slug, describeAPIs(apis))
		case needs == "ssh" && apis.SSH == 0:
			c.warnf(ErrReference, f+".configurationType", "endpoint %q is configured over SSH (%s), but image %q declares no SSH API", ep.Name, ep.ConfigurationType, slug)
		}
	}
}

// configAPI is the API an endpoint's configuration goes through: netconf,
// ssh, or "" (not configured, or a driver this check does not know).
func configAPI(ep Endpoint) string {
	switch ep.ConfigurationType {
	case ConfigNetconf:
		return "netconf"
	case ConfigSSH, ConfigAnsible, ConfigPython:
		return "ssh"
	case ConfigNapalm:
		for _, cf := range ep.Configs {
			if cf.Driver == "junos" {
				return "netconf"
			}
		}
	}
	return ""
}

func describeAPIs(a *ImageAPIs) string {
	s := fmt.Sprintf("ssh %d, netconf %d, http %v", a.SSH, a.NETCONF, a.HTTP)
	return "it has " + s
}
