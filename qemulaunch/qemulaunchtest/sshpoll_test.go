package qemulaunchtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestPollSSH serves like QEMU user networking in front of a guest that is
// coming up: the first connections are accepted and then held silent
// (their SYN to the guest was lost), the later ones reach a real SSH
// server. PollSSH must not wait out the silent ones, and must reject a
// wrong password until its context ends.
func TestPollSSH(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(md ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if md.User() == "antidote" && string(pw) == "pw" {
			return nil, nil
		}
		return nil, fmt.Errorf("denied")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upAt := time.Now().Add(200 * time.Millisecond) // the guest answers from then on
	var held atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if time.Now().Before(upAt) {
				held.Add(1)
				go func() { time.Sleep(3 * time.Second); c.Close() }() // slirp's SYN retransmission
				continue
			}
			go func() {
				defer c.Close()
				if sc, chans, reqs, err := ssh.NewServerConn(c, cfg); err == nil {
					go ssh.DiscardRequests(reqs)
					for nc := range chans {
						nc.Reject(ssh.Prohibited, "no")
					}
					sc.Close()
				}
			}()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, err := PollSSH(ctx, ln.Addr().String(), "antidote", "pw", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if held.Load() == 0 {
		t.Fatal("no attempt was held: the test did not exercise overlapping attempts")
	}
	if late := in.Sub(upAt); late < 0 || late > 150*time.Millisecond {
		t.Errorf("login %v after the server came up; want within 150 ms (held attempts %d)", late, held.Load())
	}

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := PollSSH(ctx, ln.Addr().String(), "antidote", "wrong", 20*time.Millisecond); err == nil {
		t.Error("a wrong password logged in")
	}
}
