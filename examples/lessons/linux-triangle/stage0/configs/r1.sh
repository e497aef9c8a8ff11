#!/bin/sh
# linux-triangle stage 0, r1: the addresses `lesson plan` shows.
set -e
sudo ip addr flush dev eth1
sudo ip addr add 10.12.0.2/24 dev eth1
sudo ip link set eth1 up
sudo ip addr flush dev eth2
sudo ip addr add 10.13.0.2/24 dev eth2
sudo ip link set eth2 up
