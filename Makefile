# SPDX-License-Identifier: Apache-2.0
# btrace: `make run` and `make test` are all the set-up a fresh Debian machine needs.
SHELL := /bin/bash
CARGO ?= cargo
# The shipped binary is fully static: no interpreter, no NEEDED entry, nothing taken from
# the target's /lib, so one file runs on any distribution whatever its glibc (the dynamic
# build needs glibc 2.34 and does not start on Debian 11, RHEL 8 or Amazon Linux 2). Static
# glibc (crt-static with Debian's libc.a; libelf.a and libz.a through libbpf-sys's "static"
# feature) rather than musl: libbpf-sys's vendored libelf is reported not to build for musl
# and Debian's libelf.a is built against glibc; glibc keeps the same malloc, memcpy and
# start-up as the dynamic build (measured: README, Build). Static glibc cannot use NSS
# (user, group and host-name look-ups load libnss_* at run time): btrace makes none (the
# link map of 2026-12-07 holds no getpw*, getgr*, getaddrinfo or gethostby*; `serve
# --listen` takes a numeric address only). The only dl* function linked is dlsym, which
# Rust's std uses for optional glibc symbols and which falls back when it finds nothing.
# crt-static must not reach build scripts and proc macros (a static proc macro cannot be
# loaded): an explicit --target keeps RUSTFLAGS for the target's artefacts only, so the
# binary is target/$(TARGET)/release/btrace. A plain `cargo build --release` still makes
# the dynamic target/release/btrace (development only).
TARGET := $(shell uname -m)-unknown-linux-gnu
STATIC_ENV := CARGO_TARGET_$(shell echo $(TARGET) | tr a-z- A-Z_)_RUSTFLAGS="-C target-feature=+crt-static"
BIN := target/$(TARGET)/release/btrace
WORKLOAD := target/workload
STACKLOAD := target/stackload
UFUNCS := target/ufuncs
CAPSRUN := target/capsrun

# Debian packages: build (clang, libbpf's static libs, libc6-dev's libc.a for the static
# binary, binutils' readelf to check it has no interpreter and no NEEDED entry; the cross gcc and arm64
# libc for the aarch64 build), tests (bpftool, tmux, iproute2,
# the static workload helpers, prometheus and promtool for tests/serve.rs, chromium to
# render flame graphs), the kernel matrix (qemu for x86-64 and arm64 guests, busybox, cpio), bench (bpftrace, linux-perf, and libbpf-tools: execsnoop, opensnoop, biolatency,
# runqlat, offcputime as peers; curl for the exporter bench's scrapes), lint (shellcheck),
# make dist (lintian checks the .deb files).
PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make gcc libc6-dev binutils \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
	bpftool bpftrace tmux iproute2 util-linux python3 qemu-system-x86 qemu-system-arm busybox-static cpio \
	prometheus chromium linux-perf xz-utils zstd systemtap-sdt-dev libbpf-tools curl \
	shellcheck lintian

.PHONY: deps build build-release build-arm64 dist arm64-helpers run test unit lint vmtest vmtest-amd64 vmtest-arm64 bench vmlinux clean

deps:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

build: deps
	$(CARGO) build

build-release: deps
	$(STATIC_ENV) $(CARGO) build --release --target $(TARGET)
	@if readelf -lW $(BIN) | grep -q INTERP || readelf -dW $(BIN) | grep -q NEEDED; then \
		echo "error: $(BIN) is not static (see readelf -ld $(BIN))"; exit 1; fi

# The aarch64 binary, cross-built here the same way (static glibc from Debian's
# libc6-dev-arm64-cross, arm64 libelf.a and libz.a fetched by tests/vm/arm64-sysroot.sh);
# the kernel programs get __TARGET_ARCH_arm64 and src/bpf/arm64/vmlinux.h.
ARM64_TARGET := aarch64-unknown-linux-gnu
ARM64_BIN := target/$(ARM64_TARGET)/release/btrace
ARM64_SYSROOT := $(CURDIR)/target/arm64/sysroot
build-arm64: deps
	@if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx $(ARM64_TARGET); then \
		rustup target add $(ARM64_TARGET); fi
	bash tests/vm/arm64-sysroot.sh $(ARM64_SYSROOT)
	LIBBPF_SYS_LIBRARY_PATH_aarch64_unknown_linux_gnu=$(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu \
	CFLAGS_aarch64_unknown_linux_gnu="-I$(ARM64_SYSROOT)/usr/include -I$(ARM64_SYSROOT)/usr/include/aarch64-linux-gnu" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
		$(CARGO) build --release --target $(ARM64_TARGET)
	@if readelf -lW $(ARM64_BIN) | grep -q INTERP || readelf -dW $(ARM64_BIN) | grep -q NEEDED; then \
		echo "error: $(ARM64_BIN) is not static (see readelf -ld $(ARM64_BIN))"; exit 1; fi

$(WORKLOAD): tests/workload/workload.c
	@mkdir -p target
	gcc -static -O2 -Wall -pthread -o $@ $<

# Known stacks for profile/offcpu/--stack: frame pointers everywhere, debug info (DWARF,
# inlined functions) kept.
$(STACKLOAD): tests/workload/stackload.c
	@mkdir -p target
	gcc -static -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -Wall -o $@ $<

# User-space functions for the uprobe/usdt tests: dynamic (libc's malloc), with DWARF.
$(UFUNCS): tests/workload/ufuncs.c
	@mkdir -p target
	gcc -g -O0 -Wall -o $@ $<

# A command as nobody with only CAP_BPF and CAP_PERFMON, for the VM guests (no setpriv).
$(CAPSRUN): tests/workload/capsrun.c
	@mkdir -p target
	gcc -static -O2 -Wall -o $@ $<

# The same helpers for the arm64 guests, cross-built with the same flags into
# target/aarch64/ (tests/vm/run.sh takes files.list's target/NAME from there). ufuncs stays
# dynamic (libc:malloc uprobes): the guest gets Debian's arm64 libc6 for it; its
# <sys/sdt.h> comes from the arm64 sysroot (systemtap-sdt-dev:arm64).
ARM64_CC := aarch64-linux-gnu-gcc
ARM64_HELPERS := target/aarch64/workload target/aarch64/stackload target/aarch64/ufuncs target/aarch64/capsrun
arm64-helpers: $(ARM64_HELPERS)
target/aarch64/workload: tests/workload/workload.c
	@mkdir -p target/aarch64
	$(ARM64_CC) -static -O2 -Wall -pthread -o $@ $<
target/aarch64/stackload: tests/workload/stackload.c
	@mkdir -p target/aarch64
	$(ARM64_CC) -static -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -Wall -o $@ $<
target/aarch64/ufuncs: tests/workload/ufuncs.c tests/vm/arm64-sysroot.sh
	@mkdir -p target/aarch64
	bash tests/vm/arm64-sysroot.sh $(ARM64_SYSROOT)
	$(ARM64_CC) -g -O0 -Wall -I$(ARM64_SYSROOT)/usr/include/aarch64-linux-gnu -o $@ $<
target/aarch64/capsrun: tests/workload/capsrun.c
	@mkdir -p target/aarch64
	$(ARM64_CC) -static -O2 -Wall -o $@ $<

# Release files in target/dist: btrace-VERSION-{x86_64,aarch64}-linux.tar.gz (the static
# binary, man pages, completions, README, CHANGELOG, licences with the third-party list, the
# systemd unit), btrace_VERSION_{amd64,arm64}.deb (lintian-clean of errors) and SHA256SUMS.
# Built on an x86_64 host (the aarch64 binary is the cross build).
# Remade only when a binary or an input changed (SHA256SUMS is written last, and removed
# when lintian finds an error). The kernel matrix and tests/static_binary.rs run the
# binaries unpacked from these archives: what a user downloads is what is tested.
DIST := target/dist
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DIST_INPUTS := contrib/dist.sh contrib/third_party.py contrib/btrace-serve.service \
	README.md CHANGELOG.md LICENSE $(wildcard LICENSES/*) Cargo.lock
DIST_BIN := $(DIST)/unpacked/btrace-$(VERSION)-$(shell uname -m)-linux/btrace
DIST_ARM64_BIN := $(DIST)/unpacked/btrace-$(VERSION)-aarch64-linux/btrace
dist: build-release build-arm64
	@$(MAKE) --no-print-directory $(DIST)/SHA256SUMS
$(DIST)/SHA256SUMS: $(BIN) $(ARM64_BIN) $(DIST_INPUTS)
	bash contrib/dist.sh $(DIST) $(BIN) $(ARM64_BIN)
	lintian --fail-on error --tag-display-limit 0 $(DIST)/*.deb || { rm -f $@; exit 1; }
	mkdir -p $(DIST)/unpacked
	for a in x86_64 aarch64; do tar -xzf $(DIST)/btrace-$(VERSION)-$$a-linux.tar.gz -C $(DIST)/unpacked; done

# The main job: syscall latency histograms of the whole machine for a few seconds.
run: build-release
	$(BIN) hist --duration 5 --top 8

# Layers import downwards only (.ci/layers: apps -> tracers -> core -> resolve -> model);
# the API docs build without a warning (broken or private links); every shell script of the
# project passes shellcheck (settings in .shellcheckrc).
SHELL_SCRIPTS := .ci/run .ci/layers tests/vm/init contrib/dist.sh \
	$(wildcard bench/*.sh tests/vm/*.sh tests/vm/checks/*.sh)
lint: deps
	$(CARGO) fmt --check
	bash .ci/layers
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps
	shellcheck $(SHELL_SCRIPTS)
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features testing -- -D warnings

# Unit tests and integration tests against the real kernel (needs root). The `testing`
# feature adds the test hooks the release binary leaves out (see README). The release
# files first: tests/dist.rs checks them, tests/static_binary.rs runs the archive's binary
# from an empty root.
unit: deps dist $(WORKLOAD) $(STACKLOAD) $(UFUNCS)
	$(CARGO) test --features testing -- --test-threads=2

# Both kernel matrices, amd64 then arm64 (the arm64 one runs even when the first failed;
# the target fails if either did). KERNELS and ARM64_KERNELS narrow them (default: 5.10
# 6.1 6.12 newest each); ARM64_KERNELS=none leaves arm64 out.
vmtest:
	@rc=0; $(MAKE) --no-print-directory vmtest-amd64 || rc=1; \
	$(MAKE) --no-print-directory vmtest-arm64 || rc=1; exit $$rc

vmtest-amd64: dist $(WORKLOAD) $(STACKLOAD) $(UFUNCS) $(CAPSRUN)
	BTRACE_BIN=$(DIST_BIN) bash tests/vm/run.sh $(KERNELS)

vmtest-arm64: dist $(ARM64_HELPERS)
	@if [ "$(ARM64_KERNELS)" = none ]; then echo "vmtest: arm64 left out (ARM64_KERNELS=none)"; else \
		VMTEST_ARCH=arm64 BTRACE_BIN_ARM64=$(DIST_ARM64_BIN) WORKLOAD_BIN_ARM64=target/aarch64/workload \
		bash tests/vm/run.sh $(ARM64_KERNELS); fi

test: lint unit vmtest

# The bench needs the hidden `floor` command: a `testing` build, in its own target dir so
# the release binary stays as shipped; static like the shipped one.
BENCH_BIN := target/testing/$(TARGET)/release/btrace
bench: deps $(WORKLOAD) $(STACKLOAD)
	$(STATIC_ENV) $(CARGO) build --release --features testing --target-dir target/testing --target $(TARGET)
	BTRACE=$(BENCH_BIN) bash bench/run.sh

# Regenerate the committed vmlinux.h of this machine's architecture from its kernel BTF.
ARCH_DIR := $(patsubst x86_64,x86,$(patsubst aarch64,arm64,$(shell uname -m)))
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > src/bpf/$(ARCH_DIR)/vmlinux.h

clean:
	$(CARGO) clean
