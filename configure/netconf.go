package configure

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/text"
)

// Netconf is the configurator of the netconf method (an endpointkit
// extension): stageN/configs/<ep>.xml holds the configuration, either as
// a <config> element or as its children, and is applied with edit-config
// (merge, or replace when Target.Replace).
type Netconf struct {
	Dial DialOptions
}

var _ Configurator = (*Netconf)(nil)

// Configure applies the stage's XML to t.
func (n *Netconf) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	raw, err := os.ReadFile(sc.File)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrMissingConfig, err)
	}
	body, err := ParseNetconfConfig(sc.File, raw)
	if err != nil {
		return Report{}, err
	}
	c, err := DialNetconf(ctx, t, n.Dial)
	if err != nil {
		return Report{}, err
	}
	defer c.Close()
	op := "merge"
	if t.Replace {
		op = "replace"
	}
	rep := &Report{}
	err = c.transaction(ctx, rep, func(target string) error {
		_, err := c.step(ctx, rep, "edit-config", "<edit-config><target><"+target+"/></target><default-operation>"+op+"</default-operation><config>"+body+"</config></edit-config>")
		return err
	})
	return *rep, err
}

// step runs one RPC and records it in rep.
func (n *NetconfClient) step(ctx context.Context, rep *Report, op, body string) (string, error) {
	start := time.Now()
	out, err := n.Exec(ctx, op, body)
	s := Step{Name: op, OK: err == nil, Output: tail(out, tailSize, false), Duration: time.Since(start)}
	if err != nil {
		s.Output = err.Error()
	}
	rep.Steps = append(rep.Steps, s)
	rep.Output = tail(rep.Output+op+": "+text.FirstLine(s.Output)+"\n", tailSize, false)
	return out, err
}

// transaction runs load against the candidate datastore — lock, load,
// validate (when offered), commit, unlock, with discard-changes when
// anything fails — or, on a server without :candidate, against running
// (lock, load, unlock).
func (n *NetconfClient) transaction(ctx context.Context, rep *Report, load func(target string) error) error {
	target := "candidate"
	switch {
	case n.caps[capCandidate]:
	case n.caps[capWritableRunning]:
		target = "running"
	default:
		return fmt.Errorf("%w: the NETCONF server offers neither :candidate nor :writable-running", ErrUnsupported)
	}
	lock := "<lock><target><" + target + "/></target></lock>"
	if _, err := n.step(ctx, rep, "lock", lock); err != nil {
		return err
	}
	err := load(target)
	if err == nil && target == "candidate" && (n.caps[capValidate10] || n.caps[capValidate11]) {
		if n.caps[capYumaNCX] {
			// yuma123 (2.13) answers <ok/> to a commit that follows a
			// validate but then applies nothing; its commit validates
			// anyway (RFC 6241 8.3.4.1), so the separate step is skipped.
			rep.Steps = append(rep.Steps, Step{Name: "validate", OK: true, Output: "skipped: yuma123 ignores a commit after validate; commit validates"})
		} else {
			_, err = n.step(ctx, rep, "validate", "<validate><source><candidate/></source></validate>")
		}
	}
	if err == nil && target == "candidate" {
		_, err = n.step(ctx, rep, "commit", "<commit/>")
	}
	// Clean up even when ctx has ended, within a short grace period.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err != nil && target == "candidate" {
		n.step(cctx, rep, "discard-changes", "<discard-changes/>")
	}
	_, uerr := n.step(cctx, rep, "unlock", "<unlock><target><"+target+"/></target></unlock>")
	if err == nil {
		err = uerr
	}
	return err
}

// ParseNetconfConfig checks that raw (the content of file) is well-formed
// XML and returns what goes inside edit-config's <config>: the children
// of a top-level <config> element, or the whole document otherwise (an
// XML declaration is dropped). Errors read "FILE:LINE:COL: message".
func ParseNetconfConfig(file string, raw []byte) (string, error) {
	dec := xml.NewDecoder(bytes.NewReader(raw))
	depth, roots := 0, 0
	var rootName string
	var innerStart, innerEnd, docStart int64 = -1, -1, -1
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line, col := dec.InputPos()
			var se *xml.SyntaxError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
			}
			return "", fmt.Errorf("%s:%d:%d: %s: %w", file, line, col, msg, ErrBadConfig)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				rootName = tk.Name.Local
				if docStart < 0 {
					docStart = before
				}
				innerStart = dec.InputOffset()
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				innerEnd = before
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(tk)) > 0 {
				line, col := dec.InputPos()
				return "", fmt.Errorf("%s:%d:%d: text outside any element: %w", file, line, col, ErrBadConfig)
			}
		}
	}
	if depth != 0 {
		line, col := dec.InputPos()
		return "", fmt.Errorf("%s:%d:%d: unexpected end of file inside an element: %w", file, line, col, ErrBadConfig)
	}
	if roots == 0 {
		return "", fmt.Errorf("%s:1:1: no XML element: put the configuration (or a <config> element) in the file: %w", file, ErrBadConfig)
	}
	if roots == 1 && rootName == "config" {
		return strings.TrimSpace(string(raw[innerStart:innerEnd])), nil
	}
	return strings.TrimSpace(string(raw[docStart:])), nil
}
