// Command ekagent is endpointkit's guest agent: /init of the tiny endpoint
// image, its SSH server, sftp server and sudo. See package
// github.com/endpointkit/endpointkit/imagebuild/agent.
package main

import (
	"os"

	"github.com/endpointkit/endpointkit/imagebuild/agent"
)

func main() {
	os.Exit(agent.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
