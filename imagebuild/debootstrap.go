package imagebuild

import (
	"context"
	"errors"

	"github.com/endpointkit/endpointkit/vmimage"
)

type debootstrapInputs struct {
	kernel   *kernel
	agentSum string
}

func (b *Builder) debootstrapInputs(ctx context.Context, r *Recipe, k *kernel) (debootstrapInputs, error) {
	return debootstrapInputs{}, errors.New("imagebuild: debootstrap: not yet")
}

func (b *Builder) buildDebootstrap(ctx context.Context, r *Recipe, in debootstrapInputs, dir string) (*vmimage.Manifest, error) {
	return nil, errors.New("imagebuild: debootstrap: not yet")
}

func (b *Builder) buildDisk(ctx context.Context, r *Recipe, dir string) (*vmimage.Manifest, error) {
	return nil, errors.New("imagebuild: disk: not yet")
}
