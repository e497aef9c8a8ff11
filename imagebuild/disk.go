package imagebuild

import (
	"context"
	"errors"

	"github.com/endpointkit/endpointkit/vmimage"
)

func (b *Builder) buildDisk(ctx context.Context, r *Recipe, dir string) (*vmimage.Manifest, error) {
	return nil, errors.New("imagebuild: disk: not yet")
}
