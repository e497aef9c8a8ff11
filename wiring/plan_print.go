package wiring

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// String renders the plan for people: endpoints with their namespace and
// interfaces, then one line per link.
func (p *Plan) String() string {
	var b strings.Builder
	p.WriteText(&b)
	return b.String()
}

// WriteText writes the String form of the plan to w.
func (p *Plan) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "instance %s (lesson %s): host link %s, fabric namespace %s, nftables table %s\n", p.Instance, p.Lesson, p.HostLink, p.Fabric, p.NFTable)
	fmt.Fprintln(tw, "endpoints:")
	for _, e := range p.Endpoints {
		var ifs []string
		for _, i := range e.Interfaces {
			s := i.Name
			if i.Address.IsValid() {
				s += " " + i.Address.String()
			}
			ifs = append(ifs, s)
		}
		host := ""
		if e.Host != "" {
			host = " @" + e.Host
		}
		fmt.Fprintf(tw, "  %s%s\t%s\t%s\n", e.Name, host, e.Namespace, strings.Join(ifs, ", "))
	}
	fmt.Fprintln(tw, "links:")
	for _, l := range p.Links {
		extra := ""
		switch l.Kind {
		case KindBridge:
			extra = fmt.Sprintf("segment %d (%s)", l.Segment, p.Segments[l.Segment].Bridge)
		case KindVXLAN:
			extra = fmt.Sprintf("vni %d, hosts %q↔%q", l.VNI, l.HostA, l.HostB)
		}
		if extra != "" {
			extra = "\t" + extra
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t↔\t%s\tmtu %d%s\n", l.Index, l.Kind, endText(l.A), endText(l.B), l.MTU, extra)
	}
	if len(p.Publish) > 0 {
		fmt.Fprintln(tw, "publish:")
		for _, pb := range p.Publish {
			hp := "auto"
			if pb.HostPort != 0 {
				hp = fmt.Sprint(pb.HostPort)
			}
			fmt.Fprintf(tw, "  %s host:%s → %s:%d\n", pb.Proto, hp, pb.Endpoint, pb.Port)
		}
	}
	return tw.Flush()
}

func endText(e End) string {
	s := e.Endpoint + "." + e.Interface
	if e.Address.IsValid() {
		s += " " + e.Address.String()
	}
	return s
}

// desc is the short form of a link used in errors.
func (l *LinkPlan) desc() string {
	return l.A.Endpoint + "." + l.A.Interface + " ↔ " + l.B.Endpoint + "." + l.B.Interface
}
