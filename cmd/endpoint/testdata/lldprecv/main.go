// Command lldprecv runs inside a test guest: it joins the LLDP multicast
// group on an interface, prints "listening", then prints the hex of the
// first LLDP frame (ethertype 0x88cc) carrying the test marker and exits.
package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	ifi, err := net.InterfaceByName(os.Args[1])
	if err != nil {
		fail(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(0x88cc)))
	if err != nil {
		fail(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(0x88cc), Ifindex: ifi.Index}); err != nil {
		fail(err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6,
		Address: [8]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		fail(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 60})
	fmt.Println("listening")
	buf := make([]byte, 2048)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			fail(err)
		}
		if i := bytes.Index(buf[:n], []byte("endpointkit-test")); i >= 0 {
			fmt.Println(hex.EncodeToString(buf[:n]))
			return
		}
	}
	fail(fmt.Errorf("no LLDP frame"))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lldprecv:", err)
	os.Exit(1)
}
