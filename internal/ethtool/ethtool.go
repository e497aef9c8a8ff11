// Package ethtool sets and reads a link's TX checksum offload with the
// ethtool ioctl (SIOCETHTOOL, ETHTOOL_[GS]TXCSUM), as `ethtool -K IF tx
// on|off` does, through a socket the caller opened in the link's network
// namespace — wiring keeps one per namespace for its batches, qemulaunch
// works inside the container's.
//
// It is this one ioctl, not a general ethtool client: the kept Go
// libraries (github.com/safchain/ethtool) speak the feature-string API
// (ETHTOOL_GSTRINGS + [GS]FEATURES: a string table round trip per call)
// and open their own socket in the calling thread's namespace, where this
// needs a socket already bound to another namespace. The legacy
// TXCSUM command turns off every TX checksum feature at once, and the
// kernel then drops TSO as well, which is exactly what both callers want.
package ethtool

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

type value struct{ cmd, data uint32 }

// ifreq is struct ifreq with its union holding a pointer (ifr_data).
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// SetTXChecksum turns TX checksum offload of the link ifname on or off;
// sock is any AF_INET datagram socket of the link's namespace. A link
// without the setting (EOPNOTSUPP) is left as it is.
func SetTXChecksum(sock int, ifname string, on bool) error {
	v := value{cmd: unix.ETHTOOL_STXCSUM}
	if on {
		v.data = 1
	}
	return ioctl(sock, ifname, &v)
}

// TXChecksum reports the TX checksum offload setting of the link ifname.
func TXChecksum(sock int, ifname string) (bool, error) {
	v := value{cmd: unix.ETHTOOL_GTXCSUM}
	if err := ioctl(sock, ifname, &v); err != nil {
		return false, err
	}
	return v.data != 0, nil
}

func ioctl(sock int, ifname string, v *value) error {
	var ifr ifreq
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(sock), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 && !(errno == unix.EOPNOTSUPP && v.cmd == unix.ETHTOOL_STXCSUM) {
		return fmt.Errorf("ethtool %s: %w", ifname, errno)
	}
	return nil
}
