# Two commands on a fresh clone:  make study   and   make test
.PHONY: study test test-slice test-ci browser slurm slurm-stop test-slurm test-all bench bench-quick bench-genome-plan report-check docs clean-venv

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
DOCS_STAMP := $(VENV)/.installed-docs
# Python 3.12 or newer, found on PATH (pyenv installs are also looked at).
CANDIDATES := python3.14 python3.13 python3.12 python3 python $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3) $(wildcard /root/.pyenv/versions/3.1[2-9]*/bin/python3)
FIND_PYTHON := for p in $(CANDIDATES); do if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then command -v $$p || echo $$p; break; fi; done

$(STAMP): pyproject.toml
	@PY=$$($(FIND_PYTHON) | head -n 1); \
	if [ -z "$$PY" ]; then echo "error: Python 3.12 or newer is needed on PATH (tried: $(CANDIDATES)); install it and run make again" >&2; exit 1; fi; \
	echo "using $$PY ($$($$PY --version))"; \
	[ -x $(PY) ] || $$PY -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/sbc run studies/crispr_seed.toml

# the default suite in TEST_JOBS processes (pytest-xdist); TEST_JOBS=0 runs it in this one
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS)

# CI: Debian's Chromium for the report check, then the default suite (browser test required)
# and the CI slice of the slow tests (marker "ci": validation slice, broken control).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then echo "chromium: $$(command -v chromium || echo /usr/bin/chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	else echo "error: Chromium is needed for the report check: sudo apt-get install -y chromium" >&2; exit 1; fi

# A one-node SLURM cluster on this machine (root; Debian's munge and slurm-wlm packages): the
# SLURM tests (tests/test_slurm.py, in the CI slice) run real jobs where it is up, else skip.
slurm:
	@tools/slurm/start.sh

slurm-stop:
	@tools/slurm/stop.sh

# the SLURM tests alone, required to run (a failure, not a skip, where no SLURM node is up)
test-slurm: $(STAMP)
	SBC_REQUIRE_SLURM=1 $(PY) -m pytest -q -m ci tests/test_slurm.py

test-slice: $(STAMP)
	$(PY) -m pytest -q -m ci

# CI: the default suite and the CI slice in one session of TEST_JOBS processes, so the slice's
# long tests overlap with the many short ones; the docs extra is installed so that
# tests/test_docs.py builds the documentation and runs its examples (as make docs does)
test-ci: $(STAMP) $(DOCS_STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow or ci"

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

report-check: $(STAMP)
	$(PY) tools/check_report.py reports/crispr_seed/report.html --screenshot reports/crispr_seed/report.png

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/sequential.py
	$(PY) benchmarks/genome.py

bench-genome-plan: $(BENCH_STAMP)
	$(PY) benchmarks/plan_genome.py
	$(PY) tools/readme.py --only genome-plan

bench-quick: $(BENCH_STAMP)
	$(PY) benchmarks/run.py --quick --out $${OUT:-/tmp/sbc-bench-quick}
	$(PY) benchmarks/sequential.py --quick --out $${OUT:-/tmp/sbc-bench-quick}
	$(PY) benchmarks/genome.py --quick --out $${OUT:-/tmp/sbc-bench-quick}

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

# The documentation site, docs/build/html: every warning an error and every cross-reference
# resolved (-n); then the links between the built pages (no network here, so links that
# leave the site are not followed) and the pages' Python examples (sphinx.ext.doctest, on
# the same parsed pages).  The example notebooks are stored executed in docs/examples/
# (python docs/execute_notebooks.py reruns them).
DOCS_OPTS := -W -n --keep-going -q -d docs/build/doctrees
docs: $(DOCS_STAMP)
	$(PY) -m sphinx $(DOCS_OPTS) -b html docs docs/build/html
	$(PY) docs/check_links.py docs/build/html
	$(PY) -m sphinx $(DOCS_OPTS) -b doctest docs docs/build/doctest
	@echo "docs: docs/build/html/index.html"

clean-venv:
	rm -rf $(VENV)
