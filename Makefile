# The two commands a newcomer needs: `make demo` and `make test`.
# Each sets itself up on a fresh machine (venv, Python deps, control-plane
# binaries built from Go modules into ~/.cache/edgeopt/bin; `make test` also
# podman, buildah, runc and debootstrap from apt and the images built from the
# Dockerfile, see `images`).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgeopt-installed
# Triton 2.51 (the tritonserver binary + Python backend) ships in this wheel; we
# only use the binary, so its client deps (tritonclient[grpc], protobuf>=6,
# which TF 2.17 cannot live with) are not installed.
PYTRITON := nvidia-pytriton==0.7.0

.PHONY: setup binaries images test lint unit demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml harness/pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.10-3.12 is needed (python3.11 preferred)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[converter,operator,test,bench]'
	$(BIN)/pip install --quiet --no-deps -e ./harness
	$(BIN)/pip install --quiet --no-deps $(PYTRITON)
	touch $(STAMP)

binaries: setup
	$(BIN)/edgeopt-dev build

# apt-get install podman buildah runc debootstrap (as root, when missing), a
# Debian stand-in base from debootstrap, then the Dockerfile's operator,
# converter-cpu and triton-cpu targets with podman. Cached: seconds when current.
images: setup
	$(BIN)/edgeopt-dev images

lint: setup
	$(BIN)/ruff check edgeopt harness tests bench
	$(BIN)/ruff format --check edgeopt harness tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest tests/unit -q

# pytest exits 5 when it collected no tests: say so, and fail (a run that tests nothing is not green).
# The images first (see `images`); where podman cannot be installed or run, the
# container tests skip and say why, so this step only warns.
test: setup binaries lint
	@$(BIN)/edgeopt-dev images || echo "warning: images not built; the container tests say why" >&2
	@$(BIN)/pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests; that is a failure, not a pass" >&2; fi; \
	exit $$rc

demo: setup binaries
	$(BIN)/edgeopt-dev demo

# perf_analyzer (from the tritonclient wheel) needs libb64.so.0d from Debian's libb64-0d.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench: setup binaries images
	@/sbin/ldconfig -p | grep -q 'libb64\.so\.0d' || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libb64-0d; }
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
