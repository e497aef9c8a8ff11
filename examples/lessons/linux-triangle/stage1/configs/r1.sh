#!/bin/sh
# linux-triangle stage 1, r1: renumbered (192.168.XY.0/24 between rX and rY, host N on rN).
set -e
sudo ip addr flush dev eth1
sudo ip addr add 192.168.12.1/24 dev eth1
sudo ip link set eth1 up
sudo ip addr flush dev eth2
sudo ip addr add 192.168.13.1/24 dev eth2
sudo ip link set eth2 up
