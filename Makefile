# Outrider developer commands. `make run` starts everything; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install chromium debian-docs office-tools proxy-tools pgbouncer run test test-fast lint format typecheck check bench lock clean

$(STAMP): pyproject.toml client/pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Outrider needs Python 3.11+ (set PYTHON=python3.x)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "Creating the venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e ./client -e .
	@touch $(STAMP)

install: $(STAMP) chromium debian-docs office-tools proxy-tools pgbouncer  ## Create .venv and install Outrider with its dev tools.

# Browser workers (`render` jobs) drive Debian's Chromium through Playwright; Playwright's own
# browser download is not used. Installed here when missing and we are root with apt.
chromium:
	@path="$${OUTRIDER_CHROMIUM_PATH:-/usr/bin/chromium}"; \
	if [ -x "$$path" ]; then exit 0; fi; \
	root_with_apt=$$([ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && echo yes); \
	if [ "$$path" = /usr/bin/chromium ] && [ "$$root_with_apt" = yes ]; then \
		echo "Installing Chromium for browser workers (apt-get install chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null || { echo "Installing Chromium failed."; exit 1; }; \
	else \
		echo "NOTE: Chromium was not found at $$path. Browser workers (render jobs) and their"; \
		echo "tests need it: run 'sudo apt-get install chromium' (Debian/Ubuntu), or point"; \
		echo "OUTRIDER_CHROMIUM_PATH at a Chromium or Chrome binary."; \
	fi

# The extraction tests read real HTML nobody here wrote: Debian's PostgreSQL manual (DocBook)
# and Django's (Sphinx), about 50 MB installed, served on loopback. Installed here when missing
# and we are root with apt; elsewhere those tests skip, and fail where services are required.
DEBIAN_DOCS := postgresql-doc python-django-doc
DEBIAN_DOCS_FOUND := ls /usr/share/doc/postgresql-doc-*/html/index.html \
	/usr/share/doc/python-django-doc/html/index.html >/dev/null 2>&1
debian-docs:
	@if $(DEBIAN_DOCS_FOUND); then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's manuals for the extraction tests (apt-get install $(DEBIAN_DOCS))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(DEBIAN_DOCS) >/dev/null && $(DEBIAN_DOCS_FOUND) || \
			{ echo "Installing $(DEBIAN_DOCS) failed (or dpkg excludes /usr/share/doc)."; exit 1; }; \
	else \
		echo "NOTE: the extraction tests against real documentation need Debian's manuals:"; \
		echo "run 'sudo apt-get install $(DEBIAN_DOCS)' (they skip without them)."; \
	fi

# The document tests make real PDF and DOCX files with LibreOffice (headless) and compare
# Outrider's text with poppler's pdftotext. Installed here when missing and we are root with apt.
OFFICE_TOOLS := libreoffice-writer-nogui poppler-utils shared-mime-info
OFFICE_TOOLS_FOUND := command -v libreoffice >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1
office-tools:
	@if $(OFFICE_TOOLS_FOUND); then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing LibreOffice and poppler for the document tests (apt-get install $(OFFICE_TOOLS))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(OFFICE_TOOLS) >/dev/null && $(OFFICE_TOOLS_FOUND) || \
			{ echo "Installing $(OFFICE_TOOLS) failed."; exit 1; }; \
	else \
		echo "NOTE: the document tests need LibreOffice and pdftotext:"; \
		echo "run 'sudo apt-get install $(OFFICE_TOOLS)' (they skip without them)."; \
	fi

# The proxy tests route jobs through real forward proxies on loopback: tinyproxy (HTTP CONNECT,
# Basic auth) and microsocks (SOCKS5). Installed here when missing and we are root with apt.
PROXY_TOOLS := tinyproxy microsocks
PROXY_TOOLS_FOUND := command -v tinyproxy >/dev/null 2>&1 && command -v microsocks >/dev/null 2>&1
proxy-tools:
	@if $(PROXY_TOOLS_FOUND); then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing forward proxies for the proxy tests (apt-get install $(PROXY_TOOLS))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(PROXY_TOOLS) >/dev/null && $(PROXY_TOOLS_FOUND) || \
			{ echo "Installing $(PROXY_TOOLS) failed."; exit 1; }; \
	else \
		echo "NOTE: the proxy tests need tinyproxy and microsocks:"; \
		echo "run 'sudo apt-get install $(PROXY_TOOLS)' (they skip without them)."; \
	fi

# The PgBouncer test (tests/e2e/test_pgbouncer.py) runs the API and a worker through a real
# PgBouncer in transaction pooling mode. Installed here when missing and we are root with apt.
PGBOUNCER_FOUND := { command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer; }
pgbouncer:
	@if $(PGBOUNCER_FOUND); then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing PgBouncer for its test (apt-get install pgbouncer)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends pgbouncer >/dev/null && $(PGBOUNCER_FOUND) || \
			{ echo "Installing pgbouncer failed."; exit 1; }; \
	else \
		echo "NOTE: the PgBouncer test needs PgBouncer: run 'sudo apt-get install pgbouncer'"; \
		echo "(it skips without it)."; \
	fi

# Loopback is allowed as an egress destination in dev, so jobs can call local servers;
# set OUTRIDER_EGRESS_ALLOW_CIDRS (even to empty) to override.
run: install  ## Start the whole system on embedded defaults (Ctrl-C stops it).
	OUTRIDER_EGRESS_ALLOW_CIDRS="$${OUTRIDER_EGRESS_ALLOW_CIDRS-127.0.0.0/8,::1/128}" \
		$(BIN)/outrider dev

test: install  ## Run the whole test suite (and report its line coverage).
	$(BIN)/pytest --cov --cov-report=
	@echo "Line coverage of api/ worker/ shared/ outrider/ migrations/: $$($(BIN)/coverage report --format=total)%"

test-fast: $(STAMP)  ## The tests that need no database, Redis or browser service (under a minute).
	$(BIN)/pytest -m "not services" -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## Fix what ruff can and format the code.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy api worker shared outrider migrations client tests benchmarks

check: lint typecheck test  ## Lint, types, tests.

# Benchmarks need PostgreSQL (OUTRIDER_BENCH_DATABASE_URL, default the local server), wrk and
# Chromium; BENCH_ARGS passes options, e.g. make bench BENCH_ARGS='--quick --scenario fetch'.
bench: install  ## Run every benchmark scenario against its bare baseline (see benchmarks/README.md).
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "wrk is needed: apt-get install wrk"; exit 1; }
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# requirements.lock pins every package (and the dev tools) for Python 3.11: `make install` uses
# it, so installs repeat. After changing pyproject.toml's dependencies, run `make lock`.
lock: $(STAMP)  ## Re-pin requirements.lock from pyproject.toml.
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .outrider .pytest_cache .mypy_cache .ruff_cache
