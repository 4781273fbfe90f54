# The two commands a new user needs: `make lab` (the architecture, running locally) and
# `make test`. Everything runs through uv, in the locked environment.
UV ?= uv
export UV_PYTHON_DOWNLOADS = never

.PHONY: setup lab lab-down lab-status boot boot-status boot-down test lint bench diagram

setup:
	bash lab/install-packages.sh
	$(UV) sync --frozen

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

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy .

test: lint
	$(UV) run pytest

bench: setup
	$(UV) run python -m lab.benchmark

# Redraw docs/architecture.png from the program (under mocks); commit docs/ afterwards.
diagram:
	$(UV) run python -m tools.diagram
