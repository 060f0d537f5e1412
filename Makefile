# misbridge — the two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv when missing and install what they need (system packages too).

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit soak serve clean help

help:
	@echo "make demo   - set up .venv and run one card redemption on the simulators"
	@echo "make test   - set up .venv, then ruff, mypy --strict and the whole test suite"
	@echo "make soak   - long soak and fuzz runs (not part of make test)"
	@echo "make serve  - run the daemon wired to both simulators on the default ports"
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
	$(BIN)/pytest -q -m "not soak and not hardware" $(PYTEST_ARGS)

test: lint typecheck unit

soak: $(STAMP)
	$(BIN)/pytest -q -m soak $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
