#!/bin/sh
# swp1 and swp2 are this image's names for its first two lesson NICs.
set -e
sudo ip addr flush dev swp1
sudo ip addr add 10.41.0.3/29 dev swp1
sudo ip addr flush dev swp2
sudo ip addr add 10.42.0.3/29 dev swp2
sudo ip link set swp1 up
sudo ip link set swp2 up
