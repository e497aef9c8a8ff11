#!/bin/sh
set -e
sudo ip addr flush dev eth1
sudo ip addr add 10.9.0.2/24 dev eth1
sudo ip link set eth1 up
