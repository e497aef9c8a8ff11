package agent

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// findPowerButton returns the /dev/input/eventN of the ACPI power button.
func findPowerButton() string {
	names, _ := filepath.Glob("/sys/class/input/event*/device/name")
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(raw)) == "Power Button" {
			return "/dev/input/" + filepath.Base(filepath.Dir(filepath.Dir(n)))
		}
	}
	return ""
}

// watchPowerButton sends on power each time the ACPI power button is
// pressed (QEMU's system_powerdown). It needs the button and evdev modules.
func watchPowerButton(power chan<- struct{}, log *slog.Logger) {
	var dev *os.File
	for i := 0; i < 50 && dev == nil; i++ { // devtmpfs creates nodes asynchronously
		if p := findPowerButton(); p != "" {
			dev, _ = os.Open(p)
		}
		if dev == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if dev == nil {
		log.Warn("no ACPI power button: system_powerdown will not shut down cleanly")
		return
	}
	defer dev.Close()
	var ev [24]byte // struct input_event on 64-bit: timeval(16) type(2) code(2) value(4)
	for {
		if _, err := dev.Read(ev[:]); err != nil {
			return
		}
		typ := binary.LittleEndian.Uint16(ev[16:])
		code := binary.LittleEndian.Uint16(ev[18:])
		val := int32(binary.LittleEndian.Uint32(ev[20:]))
		if typ == evKey && code == keyPower && val == 1 {
			select {
			case power <- struct{}{}:
			default:
			}
		}
	}
}
