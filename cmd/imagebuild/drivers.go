package main

// Blob drivers for vendor disk URLs and the raw-image store: the library
// registers file:// and mem:// only; the command adds the clouds.
import (
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
)
