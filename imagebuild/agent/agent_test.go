package agent

import (
	"strings"
	"testing"
)

func TestHostsWithName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n", "127.0.0.1\tlocalhost\n127.0.1.1\tr1\n"},
		{"127.0.0.1\tlocalhost\n", "127.0.0.1\tlocalhost\n127.0.1.1\tr1\n"},
	} {
		if got := hostsWithName(tc.in, "r1"); got != tc.want {
			t.Errorf("hostsWithName(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h := HashPassword("antidotepassword")
	if ok, err := CheckPassword(h, "antidotepassword"); !ok || err != nil {
		t.Errorf("CheckPassword(right) = %v, %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "wrong"); ok {
		t.Error("CheckPassword accepted a wrong password")
	}
	if h2 := HashPassword("antidotepassword"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	if _, err := CheckPassword("md5:x", "a"); err != ErrBadHash {
		t.Errorf("CheckPassword(malformed) err = %v; want ErrBadHash", err)
	}
}

func TestParseCmdline(t *testing.T) {
	p := ParseCmdline("console=ttyS0 quiet endpointkit.hostname=r1 root=/dev/vda\n")
	if p[HostnameParam] != "r1" || p["root"] != "/dev/vda" {
		t.Errorf("ParseCmdline = %v", p)
	}
	if _, ok := p["quiet"]; !ok {
		t.Error("flag without value lost")
	}
}

func TestParseSudo(t *testing.T) {
	for _, tc := range []struct {
		args    string
		want    sudoRequest
		wantErr bool
	}{
		{"-n true", sudoRequest{user: "root", command: []string{"true"}}, false},
		{"ip addr add 10.0.0.1/24 dev eth1", sudoRequest{user: "root", command: strings.Fields("ip addr add 10.0.0.1/24 dev eth1")}, false},
		{"-u bob -- id -u", sudoRequest{user: "bob", command: []string{"id", "-u"}}, false},
		{"-ubob id", sudoRequest{user: "bob", command: []string{"id"}}, false},
		{"-i", sudoRequest{user: "root", shell: true, login: true}, false},
		{"-s ls -l", sudoRequest{user: "root", shell: true, command: []string{"ls", "-l"}}, false},
		{"-n", sudoRequest{}, true},
		{"-x true", sudoRequest{}, true},
		{"-u", sudoRequest{}, true},
	} {
		got, err := parseSudo(strings.Fields(tc.args))
		if (err != nil) != tc.wantErr {
			t.Errorf("parseSudo(%q) err = %v; want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if got.user != tc.want.user || got.shell != tc.want.shell || got.login != tc.want.login || strings.Join(got.command, " ") != strings.Join(tc.want.command, " ") {
			t.Errorf("parseSudo(%q) = %+v; want %+v", tc.args, got, tc.want)
		}
	}
}
