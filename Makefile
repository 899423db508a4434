# Bento: build, test, benchmark, install. See README.md.
PREFIX   ?= /usr/local
DESTDIR  ?=
SWIFT    ?= swift
CONFIG   ?= release
IMAGE    ?= bento.img
IMAGE_SIZE ?= 256M
MOUNTPOINT ?= /mnt/bento
# The release number, from the one line the tools' --version prints too.
VERSION := $(shell sed -n 's/^public let bentoVersion = "\(.*\)"$$/\1/p' kmod/BentoKit/Sources/BentoVersion/BentoVersion.swift)
ifeq ($(VERSION),)
$(error make: no bentoVersion line in kmod/BentoKit/Sources/BentoVersion/BentoVersion.swift)
endif
XV6FS_VERSION := 1.0.0
XV6FS2_VERSION := 2.0.0
XV6FS3_VERSION := 3.0.0
PROVENANCE_VERSION := 1.0.0

# What the root package builds: the module file and the tools.
PRODUCTS := bento-upgraded bentoctl mount.xv6 XV6Module XV6Module2 XV6Module3 ProvenanceModule mkfs.xv6 fsck.xv6
# Module files that fail upgrades on purpose: built for the tests only.
FIXTURES := FixtureImportFails FixtureOtherFileSystem FixtureNoCommonFormat FixtureSlowImport \
            FixtureFaultyTrap FixtureFaultyHang FixtureFaultyReads FixtureCopiedTable \
            FixtureOtherView FixtureProvenanceNext
BIN       = .build/$(CONFIG)
# The debootstrapped root of the end-to-end tests, kept between runs.
E2E_ROOT ?= /var/tmp/bento-e2e-root.tar
# Debian packages the build and the tests use (checked by `make deps`).
DEBIAN_PACKAGES := gcc libc6-dev pkg-config libfuse3-dev fuse3 libsystemd-dev libseccomp-dev git patchelf socat \
                   python3 e2fsprogs mount util-linux groff-base stress-ng gdb attr acl rsync libcap2-bin

export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all build deps deb test test-tsan soak bench install install-systemd install-docs man diagrams plots run clean version \
        new-module dev conformance

all: build

# Installs those of the Debian packages $(1) that are missing.
apt_install = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make: installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

deps:
	@command -v $(SWIFT) >/dev/null || { echo "make: no Swift toolchain found (expected in /opt/swift)"; exit 1; }
	@$(call apt_install,$(DEBIAN_PACKAGES))

build: deps
	@for p in $(PRODUCTS); do $(SWIFT) build -c $(CONFIG) --product $$p || exit 1; done

test: deps
	$(SWIFT) test --package-path kmod/BentoKit
	$(SWIFT) test --package-path kmod/xv6fs
	$(SWIFT) test --package-path kmod/provenance
	@for p in $(PRODUCTS) $(FIXTURES); do $(SWIFT) build --product $$p || exit 1; done
	$(SWIFT) test
	Tests/tools/mkfs-fsck.sh .build/debug
	Tests/tools/tutorial.sh .build/debug
	Tests/tools/debugging.sh .build/debug
	Tests/mount/posix.sh .build/debug
	Tests/mount/persistence.sh .build/debug
	Tests/mount/enospc.sh .build/debug
	Tests/mount/pressure.sh .build/debug
	Tests/crash/crash.sh .build/debug
	Tests/mount/daemon.sh .build/debug
	Tests/mount/upgrade.sh .build/debug
	Tests/mount/stack.sh .build/debug
	Tests/mount/caching.sh .build/debug
	Tests/mount/stress-ng.sh .build/debug
	Tests/mount/memory.sh .build/debug
	Tests/mount/fstab.sh .build/debug
	Tests/mount/readonly.sh .build/debug
	Tests/mount/xattr.sh .build/debug
	Tests/mount/data.sh .build/debug
	$(MAKE) -s conformance BIN=.build/debug MODULE=.build/debug/libXV6Module.so NEXT=.build/debug/libXV6Module2.so \
		FORMAT='$(CURDIR)/.build/debug/mkfs.xv6 --size {size}' FSCK='$(CURDIR)/.build/debug/fsck.xv6 -n' KIT_OPTIONS='--subsets 1'
	$(MAKE) -s conformance BIN=.build/debug MODULE=.build/debug/libXV6Module2.so \
		FORMAT='$(CURDIR)/.build/debug/mkfs.xv6 --size {size}' FSCK='$(CURDIR)/.build/debug/fsck.xv6 -n' KIT_OPTIONS='--subsets 1'
	$(MAKE) -s conformance BIN=.build/debug MODULE=.build/debug/libProvenanceModule.so \
		NEXT=.build/debug/libFixtureProvenanceNext.so UNDER=.build/debug/libXV6Module.so \
		FORMAT='$(CURDIR)/.build/debug/mkfs.xv6 --size {size}' FSCK='$(CURDIR)/.build/debug/fsck.xv6 -n' KIT_OPTIONS='--subsets 1'
	Tests/conformance/template.sh .build/debug
	Tests/install/install.sh
	$(MAKE) -s test-tsan
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) Tests/systemd/e2e.sh
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) BENTO_E2E_CHECKS=Tests/systemd/containment.sh Tests/systemd/e2e.sh
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) BENTO_E2E_CHECKS=Tests/systemd/pressure.sh Tests/systemd/e2e.sh
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) BENTO_E2E_CHECKS=Tests/systemd/stack.sh Tests/systemd/e2e.sh
	$(MAKE) -s deb CONFIG=debug
	BENTO_E2E_ROOT_CACHE=$(E2E_ROOT) BENTO_E2E_CHECKS=Tests/systemd/package.sh BENTO_E2E_DEB=$(CURDIR)/bento_$(VERSION)_amd64.deb \
		Tests/systemd/e2e.sh

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
# write-space check costs; then plots of the pauses, stalls and ratios
# (Docs/plots, bench/plot.sh).
bench: deps
	@$(call apt_install,gnuplot-nox)
	$(SWIFT) run -c release --package-path kmod/xv6fs xv6-bench --markdown > Docs/benchmarks-inprocess.md
	@cat Docs/benchmarks-inprocess.md
	bench/run.sh Docs/benchmarks.md
	bench/upgrade.sh Docs/benchmarks-upgrade.md
	bench/systemd.sh Docs/benchmarks-restart.md
	bench/containment.sh Docs/benchmarks-containment.md
	bench/space.sh Docs/benchmarks-space.md
	bench/memory.sh Docs/benchmarks-memory.md
	bench/plot.sh Docs

# Installs the programs, the module files and the Swift runtime libraries
# they need (under lib/bento), so a host without the toolchain runs them.
# Debug info is stripped (symbols stay, for backtraces): it is most of
# each file's size.
LIBDIR = $(DESTDIR)$(PREFIX)/lib/bento
SWIFT_RUNTIME ?= /opt/swift/usr/lib/swift/linux
# What install puts under $(PREFIX) from the build, but the runtime libraries.
INSTALLED = sbin/bento-upgraded sbin/mkfs.xv6 sbin/fsck.xv6 sbin/mount.xv6 bin/bentoctl lib/bento/libBentoKit.so \
            lib/bento/modules/xv6fs-$(XV6FS_VERSION).so lib/bento/modules/xv6fs-$(XV6FS2_VERSION).so \
            lib/bento/modules/xv6fs-$(XV6FS3_VERSION).so lib/bento/modules/provenance-$(PROVENANCE_VERSION).so
# mount(8) looks for mount.xv6 in /sbin (and /sbin/fs.d, /sbin/fs) only,
# whatever PREFIX is: outside /usr, a link there points at the program.
MOUNT_HELPER_DIR ?= /sbin
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(LIBDIR)/modules
	install -m 0755 $(BIN)/bento-upgraded $(BIN)/mkfs.xv6 $(BIN)/fsck.xv6 $(BIN)/mount.xv6 $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 $(BIN)/bentoctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(BIN)/libBentoKit.so $(LIBDIR)/
	install -m 0644 $(BIN)/libXV6Module.so $(LIBDIR)/modules/xv6fs-$(XV6FS_VERSION).so
	install -m 0644 $(BIN)/libXV6Module2.so $(LIBDIR)/modules/xv6fs-$(XV6FS2_VERSION).so
	install -m 0644 $(BIN)/libXV6Module3.so $(LIBDIR)/modules/xv6fs-$(XV6FS3_VERSION).so
	install -m 0644 $(BIN)/libProvenanceModule.so $(LIBDIR)/modules/provenance-$(PROVENANCE_VERSION).so
	cd $(DESTDIR)$(PREFIX) && strip --strip-debug $(INSTALLED)
	@# TOMLKit's `import struct Foundation.Date` links all of Foundation (and
	@# so ICU, 40 MB), though every symbol the daemon uses is in
	@# FoundationEssentials: drop the unused entries, as ld --as-needed would,
	@# after checking that no symbol is looked up in them.
	cd $(DESTDIR)$(PREFIX) && for lib in libFoundation.so libFoundationInternationalization.so; do \
		used=$$({ nm -D --undefined-only sbin/bento-upgraded | awk '{ sub(/@.*/, "", $$2); print $$2 }' | sort -u; \
			nm -D --defined-only $(SWIFT_RUNTIME)/$$lib | awk '{ print $$3 }' | sort -u; } | sort | uniq -d | head -3); \
		if [ -n "$$used" ]; then echo "make: bento-upgraded uses $$lib:" $$used; exit 1; fi; \
		patchelf --remove-needed $$lib sbin/bento-upgraded || exit 1; \
	done
	@# The runtime libraries: what the installed files name as NEEDED, found
	@# in the toolchain, and what those name in turn. Others left in
	@# lib/bento by an earlier install go.
	cd $(DESTDIR)$(PREFIX) && todo="$(INSTALLED)" copied=; \
		while [ -n "$$todo" ]; do next=; \
			for lib in $$(readelf -d $$todo | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do \
				case " $$copied " in *" $$lib "*) continue ;; esac; \
				[ -e $(SWIFT_RUNTIME)/$$lib ] || continue; \
				install -m 0644 $(SWIFT_RUNTIME)/$$lib lib/bento/ || exit 1; \
				copied="$$copied $$lib" next="$$next lib/bento/$$lib"; \
			done; todo=$$next; \
		done; \
		for f in lib/bento/*.so*; do case " $$copied libBentoKit.so " in *" $${f#lib/bento/} "*) ;; \
			*) echo "make: removing $$f, no longer needed"; rm -f "$$f" ;; esac; done
	cd $(DESTDIR)$(PREFIX) && for f in sbin/bento-upgraded sbin/mkfs.xv6 sbin/fsck.xv6 sbin/mount.xv6 bin/bentoctl; do \
		patchelf --set-rpath '$$ORIGIN/../lib/bento' $$f || exit 1; done
	patchelf --set-rpath '$$ORIGIN/..' $(LIBDIR)/modules/xv6fs-$(XV6FS_VERSION).so $(LIBDIR)/modules/xv6fs-$(XV6FS2_VERSION).so \
		$(LIBDIR)/modules/xv6fs-$(XV6FS3_VERSION).so $(LIBDIR)/modules/provenance-$(PROVENANCE_VERSION).so
	for f in $(LIBDIR)/*.so*; do patchelf --set-rpath '$$ORIGIN' $$f || exit 1; done
	if [ "$(PREFIX)" != /usr ] && [ "$(PREFIX)/sbin" != "$(MOUNT_HELPER_DIR)" ]; then \
		install -d $(DESTDIR)$(MOUNT_HELPER_DIR) && ln -sfn $(PREFIX)/sbin/mount.xv6 $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.xv6; fi
	$(MAKE) -s install-systemd install-docs

# The Debian package, bento_$(VERSION)_amd64.deb, in the tree: debian/rules
# runs `make build` and `make install PREFIX=/usr`; lintian checks it.
DEB = bento_$(VERSION)_amd64.deb
deb: deps
	@$(call apt_install,debhelper fakeroot dpkg-dev lintian)
	@date=$$(git log -1 --format=%aD 2>/dev/null || date -R); \
	printf 'bento (%s) unstable; urgency=medium\n\n  * Release %s: see Docs/release-notes.md.\n\n -- %s  %s\n' \
		"$(VERSION)" "$(VERSION)" "Bento developers <bento@bento.invalid>" "$$date" > debian/changelog
	rm -rf $(DEB) debian/bento debian/.debhelper debian/files
	dpkg-checkbuilddeps
	DEB_OUT=$(CURDIR) CONFIG=$(CONFIG) debian/rules binary
	lintian --fail-on error $(DEB)

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
	install -d $(DESTDIR)$(PREFIX)/share/doc/bento/diagrams
	install -m 0644 Docs/diagrams/*.svg $(DESTDIR)$(PREFIX)/share/doc/bento/diagrams/
	sed 's|@PREFIX@|$(PREFIX)|g' systemd/bento.toml.example > $(DESTDIR)$(PREFIX)/share/doc/bento/bento.toml.example
	@if [ -z "$(DESTDIR)" ] && command -v journalctl >/dev/null; then journalctl --update-catalog || true; fi

# Man pages, and the tools' shell completions, which the built tools write.
MANDIR = $(DESTDIR)$(PREFIX)/share/man
TOOLS = bento-upgraded bentoctl mkfs.xv6 fsck.xv6
install-docs:
	@for page in Docs/man/*.[0-9]; do \
		dir=$(MANDIR)/man$${page##*.}; name=$${page##*/}; \
		install -d $$dir && sed 's|@PREFIX@|$(PREFIX)|g' $$page > $$dir/$$name && gzip -9nf $$dir/$$name || exit 1; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	@for tool in $(TOOLS); do \
		$(BIN)/$$tool --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$tool && \
		sed -i '1{/^#!/d}' $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$tool && \
		$(BIN)/$$tool --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_$$tool && \
		$(BIN)/$$tool --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$tool.fish || exit 1; \
	done

# Regenerates the tools' man pages in Docs/man after their options change:
# the option lists come from swift-argument-parser's generate-manual plugin,
# the rest from Docs/man/src (Docs/man/assemble.py). The pages are committed,
# so that installing needs no plugin. Every page must pass mandoc's lint.
MAN_DATE ?= $(shell git log -1 --format=%cs)
man_page = python3 Docs/man/assemble.py $(1)/.build/plugins/GenerateManual/outputs/$(2)/$(3).8 Docs/man/src/$(3).8.in \
	$(1)/.build/debug/$(3) "Bento $(VERSION)" > Docs/man/$(3).8.tmp && mv Docs/man/$(3).8.tmp Docs/man/$(3).8
man: deps
	@$(call apt_install,mandoc groff-base)
	$(SWIFT) package generate-manual --configuration debug --section 8 --date $(MAN_DATE)
	$(SWIFT) package --package-path kmod/xv6fs generate-manual --configuration debug --section 8 --date $(MAN_DATE)
	$(call man_page,.,BentoUpgraded,bento-upgraded)
	$(call man_page,.,BentoCtl,bentoctl)
	$(call man_page,kmod/xv6fs,MkfsXV6,mkfs.xv6)
	$(call man_page,kmod/xv6fs,FsckXV6,fsck.xv6)
	sed -i 's/^\.Os.*/.Os Bento $(VERSION)/' Docs/man/bento.toml.5 Docs/man/bento-modules.7
	mandoc -T lint -W warning Docs/man/*.[0-9]
	@warnings=$$(for page in Docs/man/*.[0-9]; do groff -mandoc -ww -z $$page 2>&1; done); \
	if [ -n "$$warnings" ]; then echo "$$warnings"; exit 1; fi

# The pictures in Docs/upgrade.md and Docs/systemd.md, from their graphviz
# sources; the SVGs are committed.
diagrams:
	@$(call apt_install,graphviz)
	for f in Docs/diagrams/*.dot; do dot -Tsvg $$f -o $${f%.dot}.svg || exit 1; done

# Redraws Docs/plots from the benchmark reports in Docs (bench/plot.sh),
# without running the benchmarks.
plots:
	@$(call apt_install,gnuplot-nox)
	bench/plot.sh Docs

# The main job: serve the default image in the foreground until Ctrl-C.
run: build $(IMAGE)
	@mkdir -p $(MOUNTPOINT)
	@echo "Serving $(IMAGE) at $(MOUNTPOINT): look at it from another terminal (ls $(MOUNTPOINT)); Ctrl-C unmounts."
	$(BIN)/bento-upgraded --image $(IMAGE) --mountpoint $(MOUNTPOINT) --module $(BIN)/libXV6Module.so

$(IMAGE):
	$(BIN)/mkfs.xv6 --size $(IMAGE_SIZE) $(IMAGE)

# A new module package from Templates/module (Docs/first-module.md):
# make new-module NAME=hellofs DIR=~/hellofs [MODULE_VERSION=0.1.0]
# (MODULE_VERSION: VERSION is Bento's own release number.)
new-module:
	@[ -n "$(NAME)" ] && [ -n "$(DIR)" ] || { echo "usage: make new-module NAME=name DIR=dir [MODULE_VERSION=x.y.z]"; exit 2; }
	Tools/new-module.sh $(NAME) $(DIR) $(MODULE_VERSION)

# The edit-to-live loop: rebuild a module package as a new development
# version and upgrade a mount to it (Tools/dev.sh, Docs/first-module.md):
# make dev MOUNT=/mnt/hello MODULE_DIR=~/hellofs [SOCKET=...]
dev:
	@[ -n "$(MOUNT)" ] && [ -n "$(MODULE_DIR)" ] || { echo "usage: make dev MOUNT=mountpoint MODULE_DIR=dir [SOCKET=path]"; exit 2; }
	@SOCKET=$(SOCKET) Tools/dev.sh $(MOUNT) $(MODULE_DIR)

# The conformance kit (Tests/conformance/conformance.sh) on any module file:
# make conformance MODULE=x.so [NEXT=next.so] [FORMAT='mkfs CMD, {size} the size']
#                  [FSCK='fsck CMD'] [BIN=.build/release] [KIT_OPTIONS=...]
# For a layer, UNDER=fs.so: the module it is stacked over.
# Without FORMAT the image is all zeroes, for a module that formats it.
conformance:
	@[ -n "$(MODULE)" ] || { echo "usage: make conformance MODULE=x.so [NEXT=next.so] [FORMAT=cmd] [FSCK=cmd] [BIN=dir]"; exit 2; }
	Tests/conformance/conformance.sh --bin $(BIN) $(if $(NEXT),--next $(NEXT)) $(if $(UNDER),--under $(UNDER)) \
		$(if $(FORMAT),--mkfs "$(FORMAT)") $(if $(FSCK),--fsck "$(FSCK)") $(KIT_OPTIONS) $(MODULE)

# The release number (`make -s version`), e.g. for a package's file name.
version:
	@echo $(VERSION)

clean:
	rm -rf .build .build-tsan kmod/BentoKit/.build kmod/BentoKit/.build-tsan kmod/xv6fs/.build kmod/xv6fs/.build-tsan
