package endpointkit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/endpointkit/endpointkit"
)

// Print the last lines an endpoint's VM wrote on its serial console, then
// attach to the console, as `lesson logs` and `lesson console` do. Needs a running instance, so it has no checked output.
func ExampleInstance_WriteLog() {
	inst, err := endpointkit.Open(endpointkit.InstanceDir("", "linux-triangle"), endpointkit.Options{})
	if errors.Is(err, endpointkit.ErrNoInstance) {
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := inst.WriteLog(ctx, "r1", os.Stdout, endpointkit.LogOptions{Lines: 20}); err != nil {
		log.Fatal(err)
	}
	console, err := inst.Console(ctx, "r1")
	if err != nil {
		log.Fatal(err) // not running: the error says its state
	}
	defer console.Close()
	buf := make([]byte, 4096)
	n, _ := console.Read(buf) // its last lines first: the login prompt
	fmt.Printf("%s", buf[:n])
}
