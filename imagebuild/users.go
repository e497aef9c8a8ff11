package imagebuild

import (
	"fmt"
	"sort"
	"strings"
)

// account is a resolved user of an initramfs image.
type account struct {
	RecipeUser
	UID, GID int
	Home     string
}

// accounts assigns uids (from 1000) and the groups of the recipe's users:
// well-known groups keep Debian's ids, others get ids from 2000.
type accounts struct {
	users  []account
	groups map[string]int      // name -> gid
	member map[string][]string // group -> users
}

var debianGroups = map[string]int{"root": 0, "tty": 5, "disk": 6, "wheel": 10, "sudo": 27, "netdev": 109, "users": 100, "nogroup": 65534}

func newAccounts(users []RecipeUser) *accounts {
	a := &accounts{groups: map[string]int{}, member: map[string][]string{}}
	for k, v := range debianGroups {
		a.groups[k] = v
	}
	next := 2000
	for i, u := range users {
		acc := account{RecipeUser: u, UID: 1000 + i, GID: 1000 + i, Home: "/home/" + u.Name}
		a.groups[u.Name] = acc.GID
		a.users = append(a.users, acc)
	}
	for _, u := range users {
		for _, g := range u.Groups {
			if _, ok := a.groups[g]; !ok {
				a.groups[g] = next
				next++
			}
			a.member[g] = append(a.member[g], u.Name)
		}
	}
	return a
}

func (a *accounts) passwd() []byte {
	var b strings.Builder
	b.WriteString("root:x:0:0:root:/root:/bin/sh\n")
	for _, u := range a.users {
		fmt.Fprintf(&b, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Name, u.Home, u.Shell)
	}
	b.WriteString("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
	return []byte(b.String())
}

func (a *accounts) shadow() []byte {
	var b strings.Builder
	b.WriteString("root:*:19000:0:99999:7:::\n")
	for _, u := range a.users {
		// Logins are checked by the agent, not by crypt(3): no hash here.
		fmt.Fprintf(&b, "%s:*:19000:0:99999:7:::\n", u.Name)
	}
	b.WriteString("nobody:*:19000:0:99999:7:::\n")
	return []byte(b.String())
}

func (a *accounts) group() []byte {
	names := make([]string, 0, len(a.groups))
	for n := range a.groups {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return a.groups[names[i]] < a.groups[names[j]] })
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s:x:%d:%s\n", n, a.groups[n], strings.Join(a.member[n], ","))
	}
	return []byte(b.String())
}
