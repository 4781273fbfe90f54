# The two commands a new user needs: `make lab` (the architecture, running locally) and
# `make test`. Both install what they need first (`make setup`: Debian packages, uv, the locked
# Python environment, the npm linter), so either works first on a fresh machine.
UV_VERSION := 0.9.30
# uv on PATH, or the one `make uv` installs with pip (run as a module: no PATH needed).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_PYTHON_DOWNLOADS = never

.PHONY: setup uv lab lab-down lab-status boot boot-status boot-down test lint bench diagram

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

setup: uv
	bash lab/install-packages.sh
	$(UV) sync --frozen --quiet
	bash .github/scripts/install-actionlint.sh

lab: setup
	$(UV) run python -m lab up

lab-status:
	$(UV) run python -m lab status

lab-down:
	$(UV) run python -m lab down

# Every host's real cloud-config booted in containers (root; IMAGE=bookworm for Debian 12).
IMAGE ?= trixie
boot: setup
	$(UV) run python -m lab.boot up --image $(IMAGE)

boot-status:
	$(UV) run python -m lab.boot status

boot-down:
	$(UV) run python -m lab.boot down

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy .

test: lint
	$(UV) run pytest

bench: setup
	$(UV) run python -m lab.benchmark

# Redraw docs/architecture.png from the program (under mocks); commit docs/ afterwards.
diagram: setup
	$(UV) run python -m tools.diagram
