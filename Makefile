# endpointkit — build, test and demo targets.
#
# The two set-up commands in README.md are `make demo` and `make test`; both
# run `make deps` first, so a fresh Debian 12 machine (root, Go installed)
# needs nothing else.

SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):/usr/local/go/bin:/usr/sbin:/sbin:$(PATH)

# Debian packages the tests, the demo and the image builds need. One list;
# append to it (keep it sorted) instead of adding apt-get calls elsewhere.
# The python3-* ones are the libraries NRE Labs lesson scripts import (the
# python configuration method); they are Debian's /usr/bin/python3's, which
# the tests name explicitly (ektest.DebianPython): a python3 earlier on
# PATH (pyenv, a virtualenv) may lack them — point `lesson up --python` or
# $ENDPOINTKIT_PYTHON at an interpreter that has them.
DEB_PACKAGES := \
	ansible \
	binutils \
	busybox-static \
	ca-certificates \
	containerd \
	containernetworking-plugins \
	debian-installer-12-netboot-amd64 \
	debootstrap \
	docker-registry \
	docker.io \
	e2fsprogs \
	etcd-server \
	fish \
	iproute2 \
	iputils-ping \
	isolinux \
	kmod \
	netconfd \
	netconfd-module-ietf-interfaces \
	netconfd-module-ietf-system \
	nftables \
	openssh-client \
	openssh-server \
	python3 \
	python3-jinja2 \
	python3-ncclient \
	python3-netmiko \
	python3-paramiko \
	python3-requests \
	python3-scp \
	python3-yaml \
	qemu-system-x86 \
	qemu-utils \
	runc \
	sshpass \
	sudo \
	syslinux-common \
	xorriso \
	xz-utils \
	zsh

# Go tools, as module@version.
GO_TOOLS := \
	honnef.co/go/tools/cmd/staticcheck@v0.8.2

FUZZTIME ?= 30s
# Go minimises each new interesting input for up to 60 s by default, and
# fuzzing stops meanwhile (0 execs/s for most of a 30 s run): keep it short.
FUZZMINTIME ?= 3s
# Fuzz targets run by `make fuzz` (and so by `make test`): package:Target.
FUZZ_TARGETS := \
	./cmd/lesson/internal/cli:FuzzComplete \
	./configure:FuzzJunosLoadRPC \
	./configure:FuzzParseAnsibleJSON \
	./configure:FuzzParseNetconfConfig \
	./configure:FuzzSplitScriptOutput \
	./imagebuild:FuzzParseAptDepends \
	./imagebuild:FuzzParsePreseed \
	./imagebuild:FuzzParseRecipe \
	./internal/logtail:FuzzLastLines \
	./internal/strictyaml:FuzzUnmarshal \
	./lessonmeta:FuzzParse \
	./qemulaunch:FuzzLaunchRoundTrip \
	./qemulaunch:FuzzParseHostKeyBlock \
	./qemulaunch:FuzzParsePorts \
	./wiring:FuzzNewPlan \
	./wiring:FuzzParseState \
	.:FuzzOpen

TEST_FLAGS ?= -count=1 -timeout 40m
BENCH ?= .

.PHONY: all deps deps-deb deps-go build bin lint test unit fuzz bench soak demo demo-down kube-up kube-down kube-bin clean

all: build

deps: deps-deb deps-go

# Idempotent. apt-get update always runs: the image builders fetch the guest
# kernel with `apt-get download`, which needs current package lists.
deps-deb:
	apt-get update -qq
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: Debian packages present"; fi

deps-go:
	@for t in $(GO_TOOLS); do \
		bin=$$(basename $${t%@*}); \
		if [ -x "$(GOBIN)/$$bin" ]; then echo "deps: $$bin present"; else $(GO) install $$t; fi; \
	done

build: bin
	$(GO) build ./...

# The commands, side by side: `lesson up` finds the `endpoint` launcher
# beside itself.
bin:
	$(GO) build -o bin/lesson ./cmd/lesson
	$(GO) build -o bin/endpoint ./cmd/endpoint
	$(GO) build -o bin/imagebuild ./cmd/imagebuild

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

# The whole suite. Tests that need root, QEMU or a tool skip with the reason
# when it is missing; `make deps` installs everything, so here they run.
test: unit fuzz

# kube-bin first: the Kubernetes and Multus binaries the tests need are built
# once per version into the test cache (a cold build takes many minutes on 2
# CPUs), alone and outside the tests' timeouts; afterwards it is a cache hit.
unit: deps kube-bin
	$(GO) test $(TEST_FLAGS) ./...

# scripts/fuzz.sh tells a real finding from Go 1.26's fuzz-deadline race.
fuzz:
	@scripts/fuzz.sh $(GO) $(FUZZTIME) $(FUZZMINTIME) $(FUZZ_TARGETS)

# The fault soak: SOAK_N cycles of up → one random fault (QEMU, launcher
# or `lesson up` SIGKILLed, a namespace or a veth deleted, the guest's sshd
# killed) → recovery or down, asserting nothing is left after each.
# `make test` runs it with 3 cycles (EK_SOAK_N unset); SOAK_SEED repeats a
# sequence. The summary line ("soak: N cycles in …") goes to
# docs/performance.md.
SOAK_N ?= 100
soak:
	set -o pipefail; EK_SOAK_N=$(SOAK_N) EK_SOAK_SEED=$(SOAK_SEED) $(GO) test -run '^TestSoak$$' -count=1 -timeout 10h -v . 2>&1 | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok)|soak|left behind'

bench:
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchmem -count=1 -timeout 60m ./...

# The demo: linux-triangle up (the tiny image is built from
# examples/images/tiny on first use), stage 0 configured, a ping across every
# link from both ends, then how to reach each endpoint. It stays running;
# `make demo-down` removes it. Run twice, it replaces the previous demo.
DEMO_LESSON := examples/lessons/linux-triangle
DEMO_INSTANCE := linux-triangle

demo: deps bin
	bin/lesson up $(DEMO_LESSON) --instance $(DEMO_INSTANCE) --stage 0 --replace --check
	@echo; echo "demo running: the commands are in bin/ (bin/lesson ssh r1, bin/lesson status); make demo-down removes it"

demo-down: bin
	bin/lesson down --instance $(DEMO_INSTANCE)

# A single-node Kubernetes (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, and a node: kubelet, containerd, Multus, a registry on
# 127.0.0.1 — built from the Go module proxy, cached in the test cache) for
# `lesson up --kubeconfig` by hand; the tests start their own. KUBE_DIR holds
# its files and PIDs.
KUBE_DIR ?= /var/tmp/endpointkit-kube

kube-up: deps
	$(GO) run ./internal/kubetest/cmd/kubecluster up -dir $(KUBE_DIR)

kube-down:
	$(GO) run ./internal/kubetest/cmd/kubecluster down -dir $(KUBE_DIR)

kube-bin:
	$(GO) run ./internal/kubetest/cmd/kubecluster build

clean:
	$(GO) clean -testcache
