package endpointkit

import (
	"fmt"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/vmimage"
)

// checkNICs refuses, before anything starts, a lesson that cables an
// endpoint to more links than its image's NIC layout holds: the error
// names the connection that does not fit (FILE:LINE:COL), the endpoint,
// the image and its layout, and wraps vmimage.ErrNICLayout.
func checkNICs(l *lessonmeta.Lesson, m *endpoint.Model, images imageMetas) error {
	for _, ep := range m.Endpoints {
		im := images[ep.Image]
		if im == nil {
			continue
		}
		lay := im.Manifest.Layout()
		room := lay.Capacity()
		if len(ep.Interfaces) <= room || ep.Interfaces[room].Link >= len(l.Connections) {
			continue
		}
		field := fmt.Sprintf("connections[%d]", l.Connections[ep.Interfaces[room].Link].Index)
		pos := l.Position(field)
		return fmt.Errorf("%s:%d:%d: %s: endpoint %s: its link %d does not fit: image %s's %w holds %d data NICs (%s); cable fewer links to %s or give it an image whose layout holds %d (nics: in its recipe)",
			l.File, pos.Line, pos.Column, field, ep.Name, room+1, ep.Image, vmimage.ErrNICLayout, room, lay, ep.Name, len(ep.Interfaces))
	}
	return nil
}
