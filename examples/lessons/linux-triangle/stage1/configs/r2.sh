#!/bin/sh
# linux-triangle stage 1, r2: renumbered (192.168.XY.0/24 between rX and rY, host N on rN).
set -e
sudo ip addr flush dev eth1
sudo ip addr add 192.168.12.2/24 dev eth1
sudo ip link set eth1 up
sudo ip addr flush dev eth2
sudo ip addr add 192.168.23.2/24 dev eth2
sudo ip link set eth2 up
