# misbridge — the two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv when missing and install what they need (system packages too).

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Line (and branch) coverage of misbridge/ and simulators/ in this process, printed at the end of
# `make test`; below [tool.coverage.report] fail_under in pyproject.toml the run fails. Daemons and
# simulators started as subprocesses are not measured. For a subset of the tests: make unit COV=
COV ?= --cov --cov-report=term:skip-covered

.PHONY: demo test lint typecheck unit soak serve clean help

help:
	@echo "make demo   - set up .venv and run one card redemption on the simulators"
	@echo "make test   - set up .venv, then ruff, mypy --strict and the whole test suite with its coverage"
	@echo "make soak   - long soak and fuzz runs (not part of make test)"
	@echo "make fuzz   - only the three fuzzers of make soak, 10^6 executions each, with their figures"
	@echo "make bench  - the benchmark table of docs/performance.md (about 5 minutes)"
	@echo "make profile - where the daemon spends its CPU under load (py-spy)"
	@echo "make test-browser - the browser attack test with headless Chromium (installs chromium)"
	@echo "make test-hardware DEVICE_URL=/dev/mispos [CUSTOMER=1] [TEST_KEYS=1] - the conformance kit on a real PIN pad, with its report"
	@echo "make serve  - run the daemon wired to both simulators on the default ports"
	@echo "make install [DESTDIR=...] - install the service (docs/operations.md)"
	@echo "make lint-system - udevadm verify 254 on the udev rules (downloads it once)"
	@echo "make clean  - remove .venv and caches"

# Debian splits venv/ensurepip into python3-venv; install it when missing and we may.
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "misbridge needs Python >= 3.11 (found: $$($(PY) --version 2>&1))"; exit 1; }
	@$(PY) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory system-venv
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	@echo "Installing misbridge and its test tools into $(VENV) ..."
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

.PHONY: system-venv
system-venv:
	@echo "Python's venv module is missing; installing Debian's python3-venv ..."
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	 elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv; \
	 else echo "Please install python3-venv (apt-get install python3-venv) and re-run."; exit 1; fi

demo: $(STAMP)
	@$(BIN)/misbridge demo

serve: $(STAMP)
	@$(BIN)/misbridge serve --simulators

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not soak and not browser" $(COV) $(PYTEST_ARGS)

test: lint typecheck unit

soak: $(STAMP)
	$(BIN)/pytest -q -m soak $(PYTEST_ARGS)

# The fuzzers are soak tests (tests/fuzz, docs/fuzzing.md): make soak runs them too.
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/pytest -q -s -m soak tests/fuzz $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# ---------------------------------------------------------------------------------------------
# make install: misbridge as a service on a store's POS machine (docs/operations.md).
#   make install                      into / (as root), then follow docs/operations.md
#   make install DESTDIR=/tmp/tree    into a staging tree (copy it to the POS, or package it)
# Layout: the package and its dependencies in a private venv at $(OPTDIR), launchers in
# $(PREFIX)/bin, the unit, udev rule and sysusers entry under $(PREFIX)/lib, the commented
# example configuration and a root-only credentials folder in /etc/misbridge.
# INSTALL_PY is the interpreter the service runs on: Debian's own python3, which the POS has
# too (so build the tree on the same Debian release as the POS). INSTALL_EXTRAS=sim (default)
# adds the bench simulators (misbridge-sim, misbridge serve --simulators); set it empty to omit.
DESTDIR ?=
PREFIX ?= /usr
OPTDIR ?= /opt/misbridge
INSTALL_PY ?= /usr/bin/python3
INSTALL_EXTRAS ?= sim
INSTALL_BUILDDIR ?= build/install
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR ?= $(PREFIX)/share/doc/misbridge
_VENV_REL = $(shell realpath -m --relative-to=$(PREFIX)/bin $(OPTDIR))

.PHONY: install lint-system
install:
	@[ -n "$(OPTDIR)" ] && [ "$(OPTDIR)" != / ] || { echo "OPTDIR must be a dedicated folder"; exit 1; }
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet misbridge; then \
		echo "misbridge is running: systemctl stop misbridge first (docs/operations.md, Upgrade)"; exit 1; fi
	@$(INSTALL_PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "INSTALL_PY=$(INSTALL_PY) must be Python >= 3.11"; exit 1; }
	@$(INSTALL_PY) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory system-venv
	@echo "misbridge: building the wheel and a venv in $(DESTDIR)$(OPTDIR) ..."
	rm -rf "$(DESTDIR)$(OPTDIR)" "$(INSTALL_BUILDDIR)/wheel"
	$(INSTALL_PY) -m venv "$(DESTDIR)$(OPTDIR)"
	"$(DESTDIR)$(OPTDIR)/bin/python" -m pip -q wheel --no-deps -w "$(INSTALL_BUILDDIR)/wheel" .
	"$(DESTDIR)$(OPTDIR)/bin/python" -m pip -q install --no-compile --disable-pip-version-check \
		"$$(ls "$(INSTALL_BUILDDIR)"/wheel/misbridge-*.whl)$(if $(INSTALL_EXTRAS),[$(INSTALL_EXTRAS)])"
	@# Staged files must name their final paths: strip DESTDIR from scripts and pyvenv.cfg,
	@# and compile the bytecode as if it lived in $(OPTDIR) (tracebacks show real paths).
	@if [ -n "$(DESTDIR)" ]; then \
		grep -rlI --null -F "$(DESTDIR)" "$(DESTDIR)$(OPTDIR)" | xargs -0r sed -i "s|$(DESTDIR)||g"; \
	fi
	"$(DESTDIR)$(OPTDIR)/bin/python" -m compileall -q -f -j0 $(if $(DESTDIR),-s "$(DESTDIR)" -p /) \
		"$(DESTDIR)$(OPTDIR)/lib"
	chmod -R u+rwX,go+rX,go-w "$(DESTDIR)$(OPTDIR)"
	@# Launchers: run the venv's interpreter found relative to the launcher itself, isolated
	@# (-I: no PYTHON* variables, no user site, no current directory on sys.path).
	install -d -m 0755 "$(DESTDIR)$(PREFIX)/bin"
	printf '#!/bin/sh\n# misbridge launcher (make install): runs %s from the venv %s\nexec "$$(dirname "$$(readlink -f "$$0")")/%s/bin/python" -I -m %s "$$@"\n' \
		misbridge "$(OPTDIR)" "$(_VENV_REL)" misbridge > "$(DESTDIR)$(PREFIX)/bin/misbridge"
	chmod 0755 "$(DESTDIR)$(PREFIX)/bin/misbridge"
	@if [ -n "$(INSTALL_EXTRAS)" ]; then \
		printf '#!/bin/sh\n# misbridge-sim launcher (make install): runs %s from the venv %s\nexec "$$(dirname "$$(readlink -f "$$0")")/%s/bin/python" -I -m %s "$$@"\n' \
			misbridge-sim "$(OPTDIR)" "$(_VENV_REL)" simulators > "$(DESTDIR)$(PREFIX)/bin/misbridge-sim" \
		&& chmod 0755 "$(DESTDIR)$(PREFIX)/bin/misbridge-sim"; \
	fi
	install -d -m 0755 "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(UDEVRULESDIR)" "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(DOCDIR)"
	sed -e 's|^ExecStart=/usr/bin/misbridge |ExecStart=$(PREFIX)/bin/misbridge |' \
		-e 's|^Documentation=file:/usr/share/doc/misbridge/|Documentation=file:$(DOCDIR)/|' \
		systemd/misbridge.service > "$(DESTDIR)$(UNITDIR)/misbridge.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/misbridge.service"
	sed -e 's|^ExecStart=/usr/bin/misbridge |ExecStart=$(PREFIX)/bin/misbridge |' \
		-e 's|^Documentation=file:/usr/share/doc/misbridge/|Documentation=file:$(DOCDIR)/|' \
		systemd/misbridge-reconcile.service > "$(DESTDIR)$(UNITDIR)/misbridge-reconcile.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/misbridge-reconcile.service"
	sed -e 's|^Documentation=file:/usr/share/doc/misbridge/|Documentation=file:$(DOCDIR)/|' \
		systemd/misbridge-reconcile.timer > "$(DESTDIR)$(UNITDIR)/misbridge-reconcile.timer"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/misbridge-reconcile.timer"
	install -m 0644 udev/99-misbridge-pinpad.rules "$(DESTDIR)$(UDEVRULESDIR)/99-misbridge-pinpad.rules"
	install -m 0644 packaging/sysusers.conf "$(DESTDIR)$(SYSUSERSDIR)/misbridge.conf"
	install -m 0644 docs/operations.md "$(DESTDIR)$(DOCDIR)/operations.md"
	@# /etc: the example is always refreshed; misbridge.toml and the credentials are never touched.
	install -d -m 0755 "$(DESTDIR)/etc/misbridge"
	install -d -m 0700 "$(DESTDIR)/etc/misbridge/credentials"
	"$(DESTDIR)$(OPTDIR)/bin/python" -I packaging/gen_config_example.py > "$(INSTALL_BUILDDIR)/misbridge.toml.example"
	install -m 0644 "$(INSTALL_BUILDDIR)/misbridge.toml.example" "$(DESTDIR)/etc/misbridge/misbridge.toml.example"
	@if [ -z "$(DESTDIR)" ]; then \
		echo "misbridge: creating the system user, reloading systemd and udev ..."; \
		if command -v systemd-sysusers >/dev/null; then systemd-sysusers "$(SYSUSERSDIR)/misbridge.conf"; fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		if [ -S /run/udev/control ]; then udevadm control --reload \
			&& udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb; fi; \
	fi
	@echo "misbridge installed$(if $(DESTDIR), into $(DESTDIR)). Next: docs/operations.md (configuration, credentials, systemctl enable --now misbridge misbridge-reconcile.timer)."

# Offline checks of the unit and the udev rule with the real tools, installed when missing:
# systemd-analyze (Debian's systemd), udevadm (udev) and, on Debian 12 whose udevadm 252 has no
# `verify`, udevadm 254 unpacked privately from bookworm-backports (packaging/fetch-udevadm.sh).
# Here a missing tool fails the run instead of skipping the test.
SYSTEM_TOOLS := $(VENV)/system-tools
lint-system: $(STAMP)
	@missing=""; \
	 command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	 command -v udevadm >/dev/null || missing="$$missing udev"; \
	 if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; \
		else echo "Please install:$$missing (apt-get install$$missing) and re-run."; exit 1; fi; \
	 fi
	@sh packaging/fetch-udevadm.sh $(SYSTEM_TOOLS)
	MISBRIDGE_REQUIRE_SYSTEM_TOOLS=1 \
	MISBRIDGE_UDEVADM="$$([ -x $(SYSTEM_TOOLS)/udevadm ] && echo $(SYSTEM_TOOLS)/udevadm || command -v udevadm)" \
		$(BIN)/pytest -q tests/system $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------
# make test-browser: R17's attack from a real web page (tests/security/test_browser_attack.py),
# with headless Chromium from Debian's `chromium` package, installed here when missing (as root,
# or with password-less sudo). Not part of `make test`, which must not need a browser.
# `make browser-deps` only installs; it exits 1 when chromium cannot be had (.ci/run then warns).
.PHONY: browser-deps test-browser
browser-deps:
	@command -v chromium >/dev/null && exit 0; \
	 echo "Installing Debian's chromium (headless browser for make test-browser) ..."; \
	 if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	 elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	 else echo "Please install chromium (apt-get install chromium) and re-run."; exit 1; fi; \
	 command -v chromium >/dev/null || { echo "chromium is still missing after apt-get install"; exit 1; }

# make test-hardware DEVICE_URL=/dev/mispos [CUSTOMER=1] [TEST_KEYS=1]: the conformance kit on a
# real pad (misbridge conformance, docs/operations.md "Certifying a PIN pad"); CUSTOMER=1 adds the
# card, PIN, code, choice and cable checks, which need a person at the pad; TEST_KEYS=1 the key
# checks, which load keys into a pad holding the test keys of docs/device-protocol.md §11. Prints
# the report and writes REPORT (JSON) and REPORT_TEXT.
DEVICE_URL ?=
CUSTOMER ?=
TEST_KEYS ?=
REPORT ?= conformance-report.json
REPORT_TEXT ?= conformance-report.txt
.PHONY: test-hardware
test-hardware: $(STAMP)
	@[ -n "$(DEVICE_URL)" ] || { echo "usage: make test-hardware DEVICE_URL=/dev/mispos [CUSTOMER=1] [TEST_KEYS=1]"; exit 2; }
	$(BIN)/misbridge conformance --device-url "$(DEVICE_URL)" $(if $(CUSTOMER),--customer) $(if $(TEST_KEYS),--test-keys) \
	  --report "$(REPORT)" --text "$(REPORT_TEXT)"

test-browser: $(STAMP) browser-deps
	MISBRIDGE_REQUIRE_CHROMIUM=1 $(BIN)/pytest -q -m browser $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------
# make bench: issue 7's benchmark suite (bench/, docs/performance.md); about 5 minutes on 2 cores.
# BENCH_ARGS scales it, e.g. BENCH_ARGS="--redemptions 200 --growth 400 --idle-s 10 --reconcile-repeat 1".
BENCH_ARGS ?=
# make profile: py-spy attached to the daemon under the same load (python -m bench.profile).
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	@$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $@

.PHONY: bench profile
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

profile: $(BENCH_STAMP)
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)
