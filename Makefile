# cgo-audit. Two commands do all the set-up on a fresh machine:
#   make audit   audit a Cgo package (PKG=/path/to/module; the bundled fixtures by default)
#   make test    run the test suite
# Both create .venv and install the Python dependencies the first time.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PKG ?=
BASELINE ?= go_fixtures/cgo-audit-baseline.json
AUDIT_FLAGS ?=
PYTEST_FLAGS ?=

# Tests run in parallel: most of them wait on Go builds, processes and servers
# rather than burn CPU, so more workers than cores keeps both cores busy
# (with another build beside it, under stress-ng --cpu 2: 7 min 10 s with 4
# workers, 6 min 16 s with 6; docs/measurements.md).
TEST_WORKERS ?= 6
FAST_MARKS := not slow and not network and not browser

.PHONY: all shim fixtures audit test test-fast test-durations test-stress bench demo clean generate generate-check generate-layouts lint

all: shim fixtures

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -c 'import sys; sys.exit("cgo-audit needs Python >= 3.10" if sys.version_info < (3, 10) else 0)'
	$(PYTHON) -m venv $(VENV)
	@echo "installing the Python dependencies into $(VENV) (log: $(VENV)/pip.log)"
	@$(PY) -m pip install --upgrade pip -e '.[html,test]' > $(VENV)/pip.log 2>&1 || (cat $(VENV)/pip.log; exit 1)
	touch $@

shim: $(VENV)/.installed
	$(PY) -m cgo_audit build-shim --output build/libcgoaudit.so

fixtures:
	cd goaudit && go vet ./... && go build ./...
	cd go_fixtures && go vet ./... && go build ./...

audit: $(VENV)/.installed
ifeq ($(strip $(PKG)),)
	$(PY) -m cgo_audit bench --dir go_fixtures --baseline $(BASELINE) $(AUDIT_FLAGS) ./...
else
	$(PY) -m cgo_audit bench --dir $(PKG) $(AUDIT_FLAGS) ./...
endif

test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_FLAGS)

# The unit tests and the core integration tests (no slow, network or browser mark).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) -m '$(FAST_MARKS)' $(PYTEST_FLAGS)

# make test hands the longest tests out first, by tests/durations.json;
# this run records it anew (commit the file when tests were added).
test-durations: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) --record-durations $(PYTEST_FLAGS)

# The integration tests with both cores busy (stress-ng --cpu 2): no test may
# depend on throughput or wall-clock luck.
test-stress: $(VENV)/.installed
	@command -v stress-ng >/dev/null || { echo "test-stress needs stress-ng (apt-get install -y stress-ng)"; exit 2; }
	stress-ng --cpu 2 --quiet & stress=$$!; \
	$(PY) -m pytest -n $(TEST_WORKERS) tests/integration $(PYTEST_FLAGS); status=$$?; \
	kill $$stress; wait $$stress; exit $$status

# Generated files, from their one source (scripts/generate.py says which).
generate: $(VENV)/.installed
	$(PY) scripts/generate.py

# CI: fails if a committed generated file differs from what generate writes.
generate-check: $(VENV)/.installed
	$(PY) scripts/generate.py --check

# The Go layout table needs a toolchain per release from the module proxy (slow):
#   make generate-layouts GO_RELEASES="go1.24.0 go1.25.0"
generate-layouts: $(VENV)/.installed
	$(PY) scripts/go_layout_table.py $(GO_RELEASES)

# ruff and mypy (configured in pyproject.toml), gofmt and go vet on the Go
# modules, and the C code (shim and its C tests) at -Wall -Wextra -Werror.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy cgo_audit
	@unformatted=$$(gofmt -l goaudit go_fixtures); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	cd goaudit && go vet ./...
	cd go_fixtures && go vet ./...
	$(PY) -c 'import pathlib, sys, tempfile; from cgo_audit.shim.build import compile_shim; \
	    out = pathlib.Path(tempfile.mkdtemp()) / "shim.so"; \
	    sys.exit("shim: warnings at -Werror" if compile_shim(out, extra_flags=("-Werror",)) else 0)'
	for test in csrc/tests/*.c; do cc -fsyntax-only -Wall -Wextra -Werror -Icsrc "$$test" || exit 1; done

bench: $(VENV)/.installed
	$(PY) bench/overhead.py

demo: $(VENV)/.installed
	$(PY) -m cgo_audit demo --html build/cgo-audit-demo.html

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
