// Package text holds the few string helpers several packages share: the
// first line of a message, and POSIX shell quoting.
package text

import "strings"

// FirstLine is the first line of s, without surrounding white space.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellQuoteAll quotes each of ss and joins them with spaces.
func ShellQuoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = ShellQuote(s)
	}
	return strings.Join(q, " ")
}
