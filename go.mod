module github.com/endpointkit/endpointkit

go 1.26.0

require (
	github.com/Juniper/go-netconf v0.1.1
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/pkg/sftp v1.13.12
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/kr/fs v0.1.0 // indirect
	github.com/ziutek/telnet v0.0.0-20180329124119-c3b780dc415b // indirect
)
