# Outrider developer commands. `make run` starts everything; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck check bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Outrider needs Python 3.11+ (set PYTHON=python3.x)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "Creating the venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install Outrider with its dev tools.

# Loopback is allowed as an egress destination in dev, so jobs can call local servers;
# set OUTRIDER_EGRESS_ALLOW_CIDRS (even to empty) to override.
run: install  ## Start the whole system on embedded defaults (Ctrl-C stops it).
	OUTRIDER_EGRESS_ALLOW_CIDRS="$${OUTRIDER_EGRESS_ALLOW_CIDRS-127.0.0.0/8,::1/128}" \
		$(BIN)/outrider dev

test: install  ## Run the whole test suite.
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy api worker shared outrider migrations tests benchmarks

check: lint typecheck test  ## Lint, types, tests.

clean:
	rm -rf $(VENV) .outrider .pytest_cache .mypy_cache .ruff_cache
