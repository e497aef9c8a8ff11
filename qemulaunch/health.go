package qemulaunch

import (
	"fmt"
	"os"
	"strings"
)

// Health states written to the state directory's health file. A container
// HEALTHCHECK passes when the first word is "ready" (`endpoint health`
// does exactly this check).
const (
	HealthStarting = "starting"
	HealthReady    = "ready"
	// HealthRestarting: the VM ended and the launcher starts it again
	// (detail: which restart, how it ended, when the next start is).
	HealthRestarting = "restarting"
	HealthStopping   = "stopping"
	HealthStopped    = "stopped"
	HealthFailed     = "failed"
)

// writeHealth replaces the health file atomically with "state[: detail]".
func writeHealth(path, state, detail string) error {
	line := state
	if detail != "" {
		line += ": " + strings.ReplaceAll(detail, "\n", " ")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(line+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadHealth returns the state word and detail of an instance's health
// file.
func ReadHealth(dir StateDir) (state, detail string, err error) {
	b, err := os.ReadFile(dir.Health())
	if err != nil {
		return "", "", fmt.Errorf("health: %w", err)
	}
	line := strings.TrimSpace(string(b))
	state, detail, _ = strings.Cut(line, ": ")
	return state, detail, nil
}
