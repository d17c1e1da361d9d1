# Two commands do all set-up on a fresh machine (Python 3.11 and make):
#   make run    create .venv, install, start the default profile on 127.0.0.1:2525,
#               with the web console and control API on http://127.0.0.1:8025/
#   make test   create .venv, install, run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= ims55sp4
LISTEN ?= tcp:2525:interface=127.0.0.1
API ?= tcp:8025:interface=127.0.0.1
STATE ?= var

.PHONY: install compile run test bench fuzz soak soak-memory clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# compat editable mode keeps the checkout on sys.path, where twistd finds
	# twisted/plugins/ (PEP 660's default finder hides it).
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

install: $(STAMP)

# Byte-compile the checkout as pip does for an installed package: an editable
# install is compiled on first import only where bytecode may be written
# (not under PYTHONDONTWRITEBYTECODE), else on every start.
compile: install
	$(BIN)/python -m compileall -q emulator twisted/plugins

# API= (empty) serves no console or control API.
run: compile
	$(BIN)/twistd --nodaemon --pidfile= emulator --profile $(PROFILE) --listen $(LISTEN) $(if $(API),--api $(API)) \
		--maildir $(STATE)/maildir --transcripts $(STATE)/transcripts --state-dir $(STATE)/state

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Figures, never assertions: the core's micro-benchmarks, then the emulator
# beside the reference servers (bench/README.md).  BENCH_ARGS=--quick for a
# short run.
bench: compile
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' --config-settings editable_mode=compat
	$(BIN)/python -m pytest bench/micro --benchmark-only --benchmark-columns=min,median,max,ops -p no:cacheprovider -q
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The hypothesis properties (core parser, chunking, profile loader) for a long
# run outside CI; FUZZ_ARGS=-x stops at the first failure.
fuzz: install
	$(BIN)/python -m pytest tests/properties --hypothesis-profile=fuzz --hypothesis-show-statistics $(FUZZ_ARGS)

# A 1,000-client burst, then N concurrent real clients on loopback, then a
# Maildir exactly-once check.
soak: compile
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Memory over a long run (issue 19): 100,000 sessions with 100 KiB messages,
# the server's RSS at the end within 10% of that after the first 10,000;
# delivered mail and transcripts are consumed as they come (bounded disk).
# About ten minutes; SOAK_ARGS adds to or overrides the options.
soak-memory: compile
	$(BIN)/python bench/soak.py --clients 20 --sessions 100000 --messages 1 --size 102400 \
		--consume --max-rss-growth 10 --timeout 3600 $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info twisted/plugins/dropin.cache
	find emulator twisted tests bench -name __pycache__ -prune -exec rm -rf {} +
