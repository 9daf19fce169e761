# hwlib and its book. `make book` and `make test` do all the set-up (see README.md).
# Python 3.12 (aihwkit 1.2.0, the extra `peers`, ships wheels for 3.12 only): the first of
# python3.12, pyenv's 3.12 and python3 that runs and is 3.12; or PYTHON=/path/to/python3.12.
PYTHON  ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 \
             python3; do "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
             2>/dev/null && { command -v "$$p"; break; }; done)
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= book
NB      ?=
P       ?=
START   := $(shell date +%s)

# Data: $HWLIB_DATA if set; else ../shared/data when it exists (a read-only copy of the datasets
# beside the checkout, as on the project's CI machines); else hwlib's default, ./data.
ifeq ($(origin HWLIB_DATA),undefined)
ifneq ($(wildcard ../shared/data),)
export HWLIB_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: venv book notebook test bench cold clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.12 is required (no python3.12 found; set PYTHON=/path/to/python3.12)"; exit 2; }
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
	  echo "$(VENV) is not Python 3.12: recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dask,book,test]"
	$(PY) -m pip install -q --only-binary aihwkit -e ".[peers]" || \
	  echo "warning: aihwkit (extra peers) not installed: the aihwkit chapter shows stored results"
	touch $@

venv: $(VENV)/.installed

## make book [PROFILE=paper]: execute what is not current, build _build/html
book: venv
	$(PY) -m hwlib book --profile $(PROFILE) --started $(START)

## make notebook NB=notebooks/... P="name=value ...": rerun one notebook for the book
notebook: venv
	@test -n "$(NB)" || { echo "error: NB=notebooks/<chapter>/<notebook>.ipynb is required"; exit 2; }
	$(PY) -m hwlib run $(NB) --profile $(PROFILE) --set "$(P)"

## make test: unit tests, notebooks under nbval (smoke), the book build and browser checks
test: venv
	rm -rf _build/nbval
	$(PY) -m hwlib nbval-prepare _build/nbval --profile smoke
	$(PY) -m pytest -rs tests _build/nbval --nbval-lax \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

## make bench: every chapter's benchmark, one table of ratios (stored for the book's pages)
bench: venv
	$(PY) bench/run_all.py --store

## make cold CHAPTER=sddhr: execute a chapter cold (its results moved aside) and record the time
cold: venv
	@test -n "$(CHAPTER)" || { echo "error: CHAPTER=sddhr|memory_faults|hasgd|memristive|peers is required"; exit 2; }
	$(PY) -m hwlib cold $(CHAPTER) --profile $(PROFILE)

clean:
	rm -rf _build
