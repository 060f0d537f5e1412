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
	@echo "make bench  - the benchmark table of docs/performance.md (about 8 minutes)"
	@echo "make profile - where the daemon spends its CPU under load (py-spy)"
	@echo "make test-browser - the browser attack test with headless Chromium (installs chromium)"
	@echo "make test-hardware DEVICE_URL=/dev/mispos [CUSTOMER=1] [TEST_KEYS=1] - the conformance kit on a real PIN pad, with its report"
	@echo "make serve  - run the daemon wired to both simulators on the default ports"
	@echo "make deb   - build the Debian packages (build/deb/), checked by lintian"
	@echo "make test-deb - build two releases; install, upgrade mid-sale, roll back, purge in a Debian chroot"
	@echo "make install - make deb, then install both packages here with apt-get (root)"
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
	$(BIN)/pytest -q -m "not soak and not browser and not deb" $(COV) $(PYTEST_ARGS)

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
# make deb: the Debian packages store IT installs (packaging/build-deb.sh, docs/operations.md
# "Install"): build/deb/misbridge_<version>-1_all.deb and misbridge-<version>_<version>-1_<arch>.deb,
# a private venv with every wheel inside (installing needs no network). make deb-deps installs
# Debian's build tools; make deb-lock re-pins the wheels (packaging/requirements.lock).
# make test-deb: build two releases, lintian them, and in a Debian 12 chroot install, upgrade with
# a sale in flight, roll back, downgrade and purge (tests/package); .ci/run runs it after make test.
# make install: make deb, then apt-get install of both packages on this machine (as root).
DEB_TOOLS := debhelper dh-virtualenv lintian debootstrap python3.11-venv
.PHONY: deb deb-deps deb-lock test-deb install
deb-deps:
	@missing=""; for pkg in $(DEB_TOOLS); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; done; \
	 if [ -n "$$missing" ]; then \
		echo "Installing Debian's packaging tools:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "Please install:$$missing (apt-get install$$missing) and re-run."; exit 1; fi; \
	 fi

deb: $(STAMP) deb-deps
	PYTHON=$(abspath $(BIN)/python) sh packaging/build-deb.sh
	lintian --fail-on error,warning build/deb/misbridge_$$(sed -n 's/^__version__ = "\(.*\)"$$/\1/p' misbridge/__init__.py)-1_all.deb \
		build/deb/misbridge-$$(sed -n 's/^__version__ = "\(.*\)"$$/\1/p' misbridge/__init__.py)_*_*.deb

deb-lock: $(STAMP)
	$(BIN)/python packaging/lock_requirements.py

test-deb: $(STAMP) deb-deps
	MISBRIDGE_REQUIRE_DEB=1 $(BIN)/pytest -q -m deb -p no:cacheprovider tests/package $(PYTEST_ARGS)

install: deb
	@[ "$$(id -u)" = 0 ] || { echo "make install needs root (sudo make install)"; exit 1; }
	v=$$(sed -n 's/^__version__ = "\(.*\)"$$/\1/p' misbridge/__init__.py); \
	  apt-get install -y ./build/deb/misbridge-$${v}_$${v}-1_*.deb ./build/deb/misbridge_$${v}-1_all.deb

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
# make bench: the benchmark suite (bench/, docs/performance.md); about 8 minutes on 2 cores.
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
