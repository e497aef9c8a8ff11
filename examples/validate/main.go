// Command validate checks lesson directories with package lessonmeta and
// prints every problem as FILE:LINE:COL: FIELD: MESSAGE, as `lesson
// validate` does.
//
//	go run ./examples/validate examples/lessons/linux-triangle
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/endpointkit/endpointkit/lessonmeta"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(1)
	}
}

// run validates each lesson directory and reports on w.
func run(dirs []string, w io.Writer) error {
	if len(dirs) == 0 {
		return errors.New("usage: validate LESSON_DIR [LESSON_DIR…]")
	}
	invalid := 0
	for _, dir := range dirs {
		l, err := lessonmeta.Load(dir, lessonmeta.Options{})
		if err != nil {
			invalid++
			probs := lessonmeta.ProblemsOf(err)
			for _, p := range probs {
				fmt.Fprintln(w, p) // FILE:LINE:COL: FIELD: MESSAGE
			}
			if len(probs) == 0 {
				fmt.Fprintf(w, "%s: %v\n", dir, err)
			}
			continue
		}
		for _, p := range l.Warnings {
			fmt.Fprintln(w, p)
		}
		fmt.Fprintf(w, "%s: lesson %s is valid: %d endpoints, %d connections, %d stages\n",
			dir, l.Slug, len(l.Endpoints), len(l.Connections), len(l.Stages))
	}
	if invalid > 0 {
		return fmt.Errorf("%d of %d lessons invalid", invalid, len(dirs))
	}
	return nil
}
