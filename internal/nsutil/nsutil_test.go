package nsutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
}

func TestCreateDoDelete(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("ektns%d", os.Getpid())
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	defer Delete(name)
	if err := Create(name); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v; want ErrExists", err)
	}

	host, _ := netns.Get()
	defer host.Close()

	// A veth pair made through a bound handle lands in the namespace, not here.
	h, err := Handle(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "ektdummy0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "ektdummy1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("ektdummy0"); err == nil {
		t.Fatal("veth appeared in the host namespace")
	}

	// Do sees it, and the calling goroutine's namespace is untouched.
	err = Do(name, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			if i.Name == "ektdummy0" {
				return nil
			}
		}
		return fmt.Errorf("ektdummy0 not visible inside: %v", ifs)
	})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := netns.Get()
	defer now.Close()
	if !now.Equal(host) {
		t.Fatal("Do changed the caller's namespace")
	}

	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still exists after Delete")
	}
	if err := Delete(name); err != nil {
		t.Fatalf("second Delete = %v; want nil", err)
	}
	if _, err := Open(name); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open after Delete = %v; want ErrNotExist", err)
	}
}
