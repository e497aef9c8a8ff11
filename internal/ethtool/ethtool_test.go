package ethtool

import (
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TX checksum offload of a veth, off and on again, read back through the
// same ioctl and with a socket of the veth's namespace.
func TestTXChecksum(t *testing.T) {
	ektest.RequireRoot(t)
	ns := ektest.NetNS(t)
	err := nsutil.Do(ns, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"}); err != nil {
			return err
		}
		sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sock)
		for _, want := range []bool{false, true, false} {
			if err := SetTXChecksum(sock, "v0", want); err != nil {
				return err
			}
			if got, err := TXChecksum(sock, "v0"); err != nil || got != want {
				t.Errorf("after SetTXChecksum(%v): TXChecksum = %v, %v", want, got, err)
			}
		}
		if _, err := TXChecksum(sock, "nosuch0"); err == nil {
			t.Error("TXChecksum of a missing link")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
