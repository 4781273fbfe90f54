# The two commands a new user needs: `make lab` (the architecture, running locally) and
# `make test`. Both install what they need first (`make setup`: Debian packages, uv, the locked
# Python environment, the npm linter), so either works first on a fresh machine.
UV_VERSION := 0.9.30
# uv on PATH, or the one `make uv` installs with pip (run as a module: no PATH needed).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_PYTHON_DOWNLOADS = never

.PHONY: setup uv lab lab-down lab-status boot boot-status boot-down test check lint bench diagram \
	lint-only pytest-all pytest-fast mutation

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

# Every host's real cloud-config booted in containers (root; IMAGE=bookworm for Debian 12;
# DB_MODE=ec2 boots the database hosts too, DB_MODE=colocated web-1 and web-2 with the
# database, both on bookworm).
IMAGE ?= trixie
boot: setup
	$(UV) run python -m lab.boot up $(if $(DB_MODE),--db-mode $(DB_MODE) --image bookworm,--image $(IMAGE))

boot-status:
	$(UV) run python -m lab.boot status

boot-down:
	$(UV) run python -m lab.boot down

# `make test`: lint, types and every test (the labs too), about 31 minutes on 2 cores.
# `make check`: lint, types and the tests that need no lab (fast tests), about a minute.
# Lint runs beside the tests (make -j); the tests run in pytest-xdist workers, one group of
# files to a worker (tests/conftest.py: the boot lab's files share one group, each other file is
# its own), since most lab tests wait rather than compute.
TEST_WORKERS ?= 4
CHECK_WORKERS ?= 2
XDIST = --dist loadgroup --no-loadscope-reorder

test: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint-only pytest-all

check: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint-only pytest-fast

lint: setup
	@$(MAKE) --no-print-directory lint-only

lint-only:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy .

# Listed at the end: the slowest tests (set-ups included), and each file's wall time and CPU
# (tests/cpu_use.py): with both cores busy most of the run, CPU is what a file takes from others.
pytest-all:
	$(UV) run pytest -n $(TEST_WORKERS) $(XDIST) --durations=25 --cpu-table

pytest-fast:
	$(UV) run pytest -n $(CHECK_WORKERS) $(XDIST) -m "not lab and not boot"

bench: setup
	$(UV) run python -m lab.benchmark

# Redraw docs/architecture.png from the program (under mocks); commit docs/ afterwards.
diagram: setup
	$(UV) run python -m tools.diagram

# Mutation testing: mutmut plants small slips in the core modules ([tool.mutmut] in
# pyproject.toml) and runs the fast tests that cover each; the survivors are slips the fast loop
# would let through. Minutes, so not part of `make test`; the README has the latest score. At
# the lowest priority, so a shared machine's other work goes first.
mutation: setup
	rm -rf mutants
	nice -n 19 $(UV) run mutmut run --max-children 2
	$(UV) run mutmut results
