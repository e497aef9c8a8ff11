package endpoint

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the model as aligned tables: endpoints, interfaces,
// links and stage configuration, then the warnings. Paths are shown
// relative to the lesson directory.
func (m *Model) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "lesson %s: %d endpoints, %d links, %d stages (%s)\n\n",
		m.Lesson, len(m.Endpoints), len(m.Links), m.StageCount, m.Dir)

	fmt.Fprintln(tw, "ENDPOINT\tIMAGE\tFLAVOR\tSSH USER\tPORTS\tMGMT MAC")
	for _, e := range m.Endpoints {
		image, flavor, user := e.Image, dash(e.Flavor), dash(e.Credentials.SSHUser)
		if !e.ImageKnown {
			image += " (unknown)"
		}
		ports := make([]string, len(e.Ports))
		for i, p := range e.Ports {
			ports[i] = strconv.Itoa(p)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, image, flavor, user, dash(strings.Join(ports, ",")), e.ManagementMAC)
	}

	if len(m.Links) > 0 {
		fmt.Fprintln(tw, "\nENDPOINT\tINTERFACE\tGUEST\tMAC\tMTU\tADDRESS\tPEER")
		for _, e := range m.Endpoints {
			for _, i := range e.Interfaces {
				addr := "-"
				if i.Address.IsValid() {
					addr = i.Address.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s %s\n", e.Name, i.Name, i.GuestName, i.MAC, i.MTU, addr, i.Peer, i.PeerInterface)
			}
		}
		fmt.Fprintln(tw, "\nLINK\tA\tB\tSUBNET\tMTU")
		for _, l := range m.Links {
			subnet := l.Subnet.String()
			if !l.Explicit {
				subnet += " (default, no addresses)"
			}
			fmt.Fprintf(tw, "%d\t%s.%s\t%s.%s\t%s\t%d\n", l.Index, l.A.Endpoint, l.A.Interface, l.B.Endpoint, l.B.Interface, subnet, l.MTU)
		}
	}

	fmt.Fprintln(tw, "\nSTAGE\tENDPOINT\tMETHOD\tFILE")
	for s := range m.StageCount {
		for _, e := range m.Endpoints {
			if s >= len(e.Stages) || e.Stages[s].Method == MethodNone {
				continue
			}
			c := e.Stages[s]
			file := c.File
			if rel, err := filepath.Rel(m.Dir, c.File); err == nil && !strings.HasPrefix(rel, "..") {
				file = filepath.ToSlash(rel)
			}
			method := string(c.Method)
			if c.Driver != "" {
				method += " (" + c.Driver + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s, e.Name, method, file)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(m.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	for _, warn := range m.Warnings {
		if _, err := fmt.Fprintf(w, "warning: %s\n", warn); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
