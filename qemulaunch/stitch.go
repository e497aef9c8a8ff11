package qemulaunch

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// stitcher joins a container interface and its TAP into one L2 segment,
// and undoes it. Implementations live one per file (stitch_*.go).
type stitcher interface {
	stitch(e *netEnv, eth, tap netlink.Link) error
	// unstitch removes what stitch added; eth may already be gone.
	unstitch(e *netEnv, eth, tap netlink.Link) error
}

func stitcherFor(mode StitchMode, instance string, index int) (stitcher, error) {
	switch mode {
	case StitchMirred:
		return mirred{}, nil
	case StitchBridge:
		return bridge{name: fmt.Sprintf("ekbr%d", index), instance: instance}, nil
	}
	return nil, configErr("Stitch", "%q is not one of mirred, bridge", mode)
}
