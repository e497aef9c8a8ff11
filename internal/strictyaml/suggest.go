package strictyaml

import "strings"

const (
	maxSuggestCandidates = 200
	maxSuggestLen        = 32
)

// Suggest returns the candidate closest to key when it is close enough to
// be a likely typo (a case-insensitive match, or an edit distance of at
// most a third of key's length, between 1 and 3), else "". It bounds its
// work on hostile input: only the first 200 candidates of at most 32 bytes
// are compared by distance.
func Suggest(key string, candidates []string) string {
	best, bestDist := "", 1<<30
	lk := strings.ToLower(key)
	limit := max(1, min(3, len(key)/3))
	for i, c := range candidates {
		lc := strings.ToLower(c)
		if lc == lk {
			return c
		}
		// Bound the work: typos are short and close in length, and a
		// hostile file may hold thousands of long names.
		if i >= maxSuggestCandidates || len(lk) > maxSuggestLen || len(lc) > maxSuggestLen || abs(len(lk)-len(lc)) > limit {
			continue
		}
		if dist := editDistance(lk, lc); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// editDistance is the optimal-string-alignment distance between a and b
// (bytes): insertions, deletions, substitutions and swaps of neighbours
// ("imgae") cost 1 each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
