# Bento: build, test, benchmark, install. See README.md.
PREFIX   ?= /usr/local
DESTDIR  ?=
SWIFT    ?= swift
CONFIG   ?= release
IMAGE    ?= bento.img
IMAGE_SIZE ?= 256M
MOUNTPOINT ?= /mnt/bento
XV6FS_VERSION := 1.0.0
XV6FS2_VERSION := 2.0.0

# What the root package builds: the module file and the tools.
PRODUCTS := bento-upgraded bentoctl mount.xv6 XV6Module XV6Module2 mkfs.xv6 fsck.xv6
# Module files that fail upgrades on purpose: built for the tests only.
FIXTURES := FixtureImportFails FixtureOtherFileSystem FixtureNoCommonFormat FixtureSlowImport \
            FixtureFaultyTrap FixtureFaultyHang FixtureFaultyReads FixtureCopiedTable
BIN       = .build/$(CONFIG)
# The debootstrapped root of the end-to-end tests, kept between runs.
E2E_ROOT ?= /var/tmp/bento-e2e-root.tar
# Debian packages the build and the tests use (checked by `make deps`).
DEBIAN_PACKAGES := gcc libc6-dev pkg-config libfuse3-dev fuse3 libsystemd-dev libseccomp-dev git patchelf socat \
                   python3 e2fsprogs mount util-linux

export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all build deps test test-tsan soak bench install install-systemd run clean

all: build

deps:
	@command -v $(SWIFT) >/dev/null || { echo "make: no Swift toolchain found (expected in /opt/swift)"; exit 1; }
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make: installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build: deps
	@for p in $(PRODUCTS); do $(SWIFT) build -c $(CONFIG) --product $$p || exit 1; done

test: deps
	$(SWIFT) test --package-path kmod/BentoKit
	$(SWIFT) test --package-path kmod/xv6fs
	@for p in $(PRODUCTS) $(FIXTURES); do $(SWIFT) build --product $$p || exit 1; done
	$(SWIFT) test
	Tests/tools/mkfs-fsck.sh .build/debug
	Tests/mount/posix.sh .build/debug
	Tests/mount/persistence.sh .build/debug
	Tests/mount/enospc.sh .build/debug
	Tests/crash/crash.sh .build/debug
	Tests/mount/daemon.sh .build/debug
	Tests/mount/upgrade.sh .build/debug
	Tests/mount/fstab.sh .build/debug
	Tests/install/install.sh
	$(MAKE) -s test-tsan
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) Tests/systemd/e2e.sh
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) BENTO_E2E_CHECKS=Tests/systemd/containment.sh Tests/systemd/e2e.sh

# The unit tests, and a mount through upgrades and a worker's death, under
# ThreadSanitizer: any report fails (Tests/tsan/tsan.sh).
TSAN = --sanitize=thread --scratch-path
test-tsan: deps
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test $(TSAN) kmod/BentoKit/.build-tsan --package-path kmod/BentoKit
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test $(TSAN) kmod/xv6fs/.build-tsan --package-path kmod/xv6fs
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test $(TSAN) .build-tsan
	@for p in $(PRODUCTS); do $(SWIFT) build $(TSAN) .build-tsan --product $$p || exit 1; done
	Tests/tsan/tsan.sh .build-tsan/debug

# The persistence test at length: 200 seeds per configuration, longer runs.
soak: deps
	@for p in $(PRODUCTS); do $(SWIFT) build --product $$p || exit 1; done
	Tests/mount/persistence.sh .build/debug 200 400

# Benchmarks, each written under Docs/: the file system core in-process;
# xv6 through FUSE side by side with passthrough_ll and ext4; live upgrade;
# stalls of an upgrade, a restart and a crash under systemd; what the
# write-space check costs.
bench: deps
	$(SWIFT) run -c release --package-path kmod/xv6fs xv6-bench --markdown > Docs/benchmarks-inprocess.md
	@cat Docs/benchmarks-inprocess.md
	bench/run.sh Docs/benchmarks.md
	bench/upgrade.sh Docs/benchmarks-upgrade.md
	bench/systemd.sh Docs/benchmarks-restart.md
	bench/containment.sh Docs/benchmarks-containment.md
	bench/space.sh Docs/benchmarks-space.md

# Installs the programs, the module files and the Swift runtime libraries
# they need (under lib/bento), so a host without the toolchain runs them.
# mount(8) looks for mount.xv6 in /sbin (and /sbin/fs.d, /sbin/fs) only,
# whatever PREFIX is: outside /usr, a link there points at the program.
LIBDIR = $(DESTDIR)$(PREFIX)/lib/bento
MOUNT_HELPER_DIR ?= /sbin
PROGRAMS = $(BIN)/bento-upgraded $(BIN)/mkfs.xv6 $(BIN)/fsck.xv6 $(BIN)/mount.xv6 $(BIN)/bentoctl
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(LIBDIR)/modules
	install -m 0755 $(BIN)/bento-upgraded $(BIN)/mkfs.xv6 $(BIN)/fsck.xv6 $(BIN)/mount.xv6 $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 $(BIN)/bentoctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(BIN)/libBentoKit.so $(LIBDIR)/
	install -m 0644 $(BIN)/libXV6Module.so $(LIBDIR)/modules/xv6fs-$(XV6FS_VERSION).so
	install -m 0644 $(BIN)/libXV6Module2.so $(LIBDIR)/modules/xv6fs-$(XV6FS2_VERSION).so
	ldd $(PROGRAMS) $(BIN)/libXV6Module.so $(BIN)/libXV6Module2.so | awk '$$3 ~ "^/opt/swift/" { print $$3 }' | sort -u \
		| xargs -r -I{} install -m 0644 {} $(LIBDIR)/
	cd $(DESTDIR)$(PREFIX) && for f in sbin/bento-upgraded sbin/mkfs.xv6 sbin/fsck.xv6 sbin/mount.xv6 bin/bentoctl; do \
		patchelf --set-rpath '$$ORIGIN/../lib/bento' $$f || exit 1; done
	patchelf --set-rpath '$$ORIGIN/..' $(LIBDIR)/modules/xv6fs-$(XV6FS_VERSION).so $(LIBDIR)/modules/xv6fs-$(XV6FS2_VERSION).so
	for f in $(LIBDIR)/*.so*; do patchelf --set-rpath '$$ORIGIN' $$f || exit 1; done
	if [ "$(PREFIX)" != /usr ] && [ "$(PREFIX)/sbin" != "$(MOUNT_HELPER_DIR)" ]; then \
		install -d $(DESTDIR)$(MOUNT_HELPER_DIR) && ln -sfn $(PREFIX)/sbin/mount.xv6 $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.xv6; fi
	$(MAKE) -s install-systemd

# The service around the daemon: unit, journal catalog, tmpfiles.d entry for
# /run/bento, modules-load.d entry for fuse, and the docs they point at.
SYSTEMD_LIB = $(DESTDIR)$(PREFIX)/lib
install-systemd:
	install -d $(SYSTEMD_LIB)/systemd/system $(SYSTEMD_LIB)/systemd/catalog $(SYSTEMD_LIB)/tmpfiles.d \
		$(SYSTEMD_LIB)/modules-load.d $(DESTDIR)$(PREFIX)/share/doc/bento $(DESTDIR)/etc/bento
	sed 's|@PREFIX@|$(PREFIX)|g' systemd/bento-upgraded.service.in > $(SYSTEMD_LIB)/systemd/system/bento-upgraded.service
	chmod 0644 $(SYSTEMD_LIB)/systemd/system/bento-upgraded.service
	install -m 0644 systemd/bento.catalog $(SYSTEMD_LIB)/systemd/catalog/
	install -m 0644 systemd/bento.tmpfiles.conf $(SYSTEMD_LIB)/tmpfiles.d/bento.conf
	install -m 0644 kmod/modules-load.d/bento.conf $(SYSTEMD_LIB)/modules-load.d/bento.conf
	install -m 0644 Docs/systemd.md Docs/upgrade.md $(DESTDIR)$(PREFIX)/share/doc/bento/
	sed 's|@PREFIX@|$(PREFIX)|g' systemd/bento.toml.example > $(DESTDIR)$(PREFIX)/share/doc/bento/bento.toml.example
	@if [ -z "$(DESTDIR)" ] && command -v journalctl >/dev/null; then journalctl --update-catalog || true; fi

# The main job: serve the default image in the foreground until Ctrl-C.
run: build $(IMAGE)
	@mkdir -p $(MOUNTPOINT)
	@echo "Serving $(IMAGE) at $(MOUNTPOINT): look at it from another terminal (ls $(MOUNTPOINT)); Ctrl-C unmounts."
	$(BIN)/bento-upgraded --image $(IMAGE) --mountpoint $(MOUNTPOINT) --module $(BIN)/libXV6Module.so

$(IMAGE):
	$(BIN)/mkfs.xv6 --size $(IMAGE_SIZE) $(IMAGE)

clean:
	rm -rf .build .build-tsan kmod/BentoKit/.build kmod/BentoKit/.build-tsan kmod/xv6fs/.build kmod/xv6fs/.build-tsan
