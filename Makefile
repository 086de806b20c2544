# The few commands a person types. Each one creates .venv first if it is missing.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
RAY_STAMP := $(VENV)/.ray-installed
# Stage commands call plain `python`, `dvc` and `mlflow`: make them the venv's.
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

PORT ?= 5000
BASE ?= main
STORE ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: pipeline fashion test ui serve bench compare deps docs plots-page venv clean-venv services services-stop services-env ray mutate

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --requirement requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $(STAMP)

# Ray is optional: runtime.executor: local (the default) never imports it.
ray: $(RAY_STAMP)  ## install the ray extra (runtime.executor: ray); the tests need it

$(RAY_STAMP): requirements-ray.lock $(STAMP)
	$(BIN)/python -m pip install --quiet --requirement requirements-ray.lock
	@touch $(RAY_STAMP)

# .dvc/config points `dvc plots show` at this template (vega inlined, so the page draws offline);
# without npm it is not written, and `dvc plots show --html-template` or the network is needed.
PLOTS_PAGE := .dvc/plots.html

$(PLOTS_PAGE): | $(STAMP)
	-python -m dlbasics.dvc.plots_page $(PLOTS_PAGE)

plots-page: $(STAMP)  ## (re)write the offline page of `dvc plots show` (.dvc/plots.html, from npm's registry)
	python -m dlbasics.dvc.plots_page $(PLOTS_PAGE)

pipeline: $(STAMP) $(PLOTS_PAGE)  ## run every stage of dvc.yaml on the embedded default data
	dvc repro

# An experiment of DVC's (`dvc exp show` lists it beside the workspace's runs): params.yaml's
# profile fashion, real Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian's
# dataset-fashion-mnist package). The workspace keeps its results; params.yaml restored to
# `profile: null` and `make pipeline` return to the digits.
fashion: $(STAMP) $(PLOTS_PAGE)  ## the sources' Fashion-MNIST runs on the real data: the book's table in the report
	dvc exp run -S profile=fashion

# Two workers, one test module each at a time (module fixtures stay in one process);
# docs/tests.md has the time it took on 2 cores.
test: $(STAMP) $(RAY_STAMP) $(PLOTS_PAGE)  ## the default test suite (offline; includes real end-to-end dvc repros)
	python -m pytest -q -n 2 --dist loadscope

# First the address of the runs table (MLflow 3's UI opens on GenAI pages otherwise); a store that
# cannot be read then is a line, and the UI starts anyway.
ui: $(STAMP)  ## the MLflow UI on this project's store, bound to 127.0.0.1 with one worker
	-@MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-$(STORE)}" PYTHONPATH=src python -m dlbasics.tracking.runs --ui-address params.yaml http://127.0.0.1:$(PORT)
	mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-$(STORE)}" --host 127.0.0.1 --port $(PORT) --workers 1

# The champion of the registered model (tracking.registry.model) from this project's store, in
# this virtual environment: POST rows of the prepared data to http://127.0.0.1:$(PORT)/invocations.
serve: $(STAMP)  ## serve models:/<tracking.registry.model>@champion on 127.0.0.1, one worker
	@name=$$(PYTHONPATH=src python -m dlbasics.tracking.registry --name) && \
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-$(STORE)}" exec mlflow models serve \
	  -m "models:/$$name@champion" --env-manager local -h 127.0.0.1 -p $(PORT) -w 1

# RTOL / ATOL override the default tolerance (make compare RTOL=1e-3); the curves of the changed
# variants go to compare/<variant>.png.
compare: pipeline  ## what CI says on a pull request: params, metrics beyond rounding and curves against BASE, the report
	PYTHONPATH=src python scripts/compare.py --base $(BASE) --out compare.md $(if $(RTOL),--rtol $(RTOL)) $(if $(ATOL),--atol $(ATOL))

bench: $(STAMP)  ## speed figures measured in one run; rewrites docs/speed.md's table from it
	python -m benchmarks.bench --out reports/bench.json --readme docs/speed.md

# The team stack on this machine (PostgreSQL, an S3 server, mlflow server with basic-auth), state in
# .services/; ports from DLBASICS_PG_PORT, DLBASICS_S3_PORT, DLBASICS_MLFLOW_PORT. The S3 server,
# s3rver, comes from npm's registry (services/s3rver/package-lock.json) into the venv.
.PHONY: s3rver services-backup services-restore
S3_STAMP := $(VENV)/.s3rver-installed

s3rver: $(S3_STAMP)

$(S3_STAMP): services/s3rver/package.json services/s3rver/package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { echo "services: npm (Node.js 18 or newer) not found; install it (apt-get install nodejs npm)" >&2; exit 1; }
	mkdir -p $(VENV)/s3rver
	cp services/s3rver/package.json services/s3rver/package-lock.json $(VENV)/s3rver/
	npm ci --prefix $(VENV)/s3rver --omit=dev --no-audit --no-fund --silent
	@touch $(S3_STAMP)

services: $(STAMP) $(S3_STAMP)  ## start the tracking server on PostgreSQL with S3 artifacts; print the env to export
	python -m dlbasics.tracking.services up

services-stop: $(STAMP)  ## stop the stack; its data directory (.services/) stays
	python -m dlbasics.tracking.services down

services-env: $(STAMP)  ## print the env to export for the running stack again
	@python -m dlbasics.tracking.services env

services-backup: $(STAMP)  ## one archive of the running stack (both databases, the S3 objects, the secrets); ARCHIVE=path
	python -m dlbasics.tracking.services backup $(ARCHIVE)

services-restore: $(STAMP) $(S3_STAMP)  ## a new .services/ from ARCHIVE=path, then the stack started from it
	python -m dlbasics.tracking.services restore $(ARCHIVE)

# Mutation testing (scripts/mutate.py, mutmut): each listed module in a scratch copy under .mutmut/,
# src/ untouched. MODULES=io to run some (then nothing is recorded); docs/tests.md has the figures.
mutate: $(STAMP)  ## kill rate per core module, survivors with their diff; fails below a recorded figure
	python scripts/mutate.py $(MODULES)

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link or a page missing from
# the nav fails the build.
docs: $(STAMP)  ## build the documentation site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

deps: $(STAMP)  ## declare in dvc.yaml the files each stage executes, the plots of every variant, the models submit reads
	python -m dlbasics.dvc.codedeps --write dvc.yaml
	python -m dlbasics.dvc.plots --write dvc.yaml

clean-venv:
	rm -rf $(VENV)
