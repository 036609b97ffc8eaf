# syntax=docker/dockerfile:1
#
# The images of edgeopt, from one source tree. The halves of edgeopt must not
# share dependencies:
#
#   operator       the control plane (kopf, kubernetes client, tritonclient.http).
#                  No TensorFlow: it never touches a model file.
#                    docker build --target operator       -t edgeopt-operator .
#   converter      the data plane that runs inside the conversion Job on a GPU
#                  node. It needs TensorFlow *built with TensorRT*, which pip does
#                  not ship (and TF-TRT ends with TF 2.17), so it starts from
#                  NVIDIA's TensorFlow container instead of installing tensorflow-cpu.
#                    docker build --target converter      -t edgeopt-converter .
#   converter-cpu  the same converter with tensorflow-cpu from the `converter`
#                  extra: for CPU-only clusters (`tensorrt.enabled: false`, the
#                  ONNX path) and for the tests.
#                    docker build --target converter-cpu  -t edgeopt-converter-cpu .
#   triton         NGC Triton plus TensorFlow and onnxruntime in its Python
#                  environment: what `target.backend: python` models import.
#                  The chart's default Triton (ghcr.io/edgeopt/edgeopt-triton).
#                    docker build --target triton         -t edgeopt-triton .
#   triton-cpu     its CPU twin: the tritonserver and Python backend stub of
#                  the nvidia-pytriton wheel, with the same pip set.
#                    docker build --target triton-cpu     -t edgeopt-triton-cpu .
#
# Base images are build arguments that default to exact pins (bump them on
# purpose, not by accident). Where the registries are out of reach, the dev
# harness builds a Debian stand-in for the Python base and passes it in:
# `edgeopt-dev images` (harness/edgeopt_dev/images.py).
#
# Every image runs as the fixed numeric non-root UID 10001, so that the
# chart's `runAsNonRoot: true` can be checked by the kubelet, and works with a
# read-only root filesystem (the chart mounts an emptyDir at /tmp).
# Dependencies are installed before the source is copied, and downloaded wheels
# are kept in a build cache mount: a source change re-runs one small layer, and
# TensorFlow is downloaded once per machine, not once per build. (pip's own HTTP
# cache is not enough: proxies that answer `no-store` leave it empty.) Behind a TLS-intercepting
# proxy, mount its CA bundle and pass `--build-arg PIP_CERT=PATH` (the harness
# does: PIP_CERT is an ARG, so the path never lands in an image's environment).
# tests/ship/test_dockerfile.py checks targets, users, pins and entrypoints;
# tests/containers/ builds them with podman and runs them.

ARG PYTHON_BASE=python:3.11.11-slim-bookworm
# NGC TensorFlow 24.12 ships TensorFlow 2.17.0+nv24.12 built with TensorRT
# (TensorRT 10.x, CUDA 12.x, Python 3.12).
ARG TENSORFLOW_BASE=nvcr.io/nvidia/tensorflow:24.12-tf2-py3
# NGC Triton 25.02 (Python 3.12), the base of the `triton` image: its Python
# backend serves `target.backend: python` once TensorFlow and onnxruntime are
# added, and it has the onnxruntime backend. 25.02 is also the last release
# with the TensorFlow backend (the chart documents NGC's 25.02-tf2-python-py3
# for `target.backend: tensorflow`). `tensorrt` plans load only in the TensorRT
# they were built with, the converter base's: a 24.12 Triton, not this one.
ARG TRITON_BASE=nvcr.io/nvidia/tritonserver:25.02-py3

# ------------------------------------------------------------ python (shared)
# The slim Python base with edgeopt's user; operator, converter-cpu and
# triton-cpu grow from it.
FROM ${PYTHON_BASE} AS python

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 edgeopt \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edgeopt
WORKDIR /src
COPY pyproject.toml ./
# requirements.py EXTRA... prints the pinned requirements of those extras
# (base dependencies included) from pyproject.toml: the one source of pins.
RUN printf '%s\n' \
  'import sys, tomllib' \
  'project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]' \
  'reqs = list(project["dependencies"])' \
  'for extra in sys.argv[1:]: reqs += project["optional-dependencies"][extra]' \
  'print("\n".join(reqs))' > /usr/local/bin/edgeopt-requirements.py \
# edgeopt-pip-install REQUIREMENTS [PIP-OPTIONS]: download into the wheel cache
# mount (files already there are not fetched again), then install from it alone.
 && printf '%s\n' '#!/bin/sh' 'set -e' 'req=$1; shift' \
  'pip download --quiet --dest /var/cache/edgeopt/wheels "$@" -r "$req"' \
  'pip install --no-cache-dir --no-index --find-links /var/cache/edgeopt/wheels "$@" -r "$req"' \
  > /usr/local/bin/edgeopt-pip-install \
 && chmod 755 /usr/local/bin/edgeopt-pip-install

# ---------------------------------------------------------------- operator
FROM python AS operator

# Only the operator extra. The last command fails the build if anything pulled
# TensorFlow in: the operator image must stay small and TF-free.
ARG PIP_CERT
RUN --mount=type=cache,id=edgeopt-wheels,target=/var/cache/edgeopt/wheels \
    python /usr/local/bin/edgeopt-requirements.py operator > /tmp/requirements.txt \
 && edgeopt-pip-install /tmp/requirements.txt
COPY README.md ./
COPY edgeopt ./edgeopt
RUN pip install --no-cache-dir --no-deps ".[operator]" \
 && rm -rf /src /tmp/*.txt /usr/local/bin/edgeopt-requirements.py /usr/local/bin/edgeopt-pip-install \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)" \
 && edgeopt --version

WORKDIR /
USER 10001:10001

# kopf liveness endpoint and Prometheus metrics (EDGEOPT_LIVENESS_PORT, EDGEOPT_METRICS_PORT).
EXPOSE 8080 9090
ENTRYPOINT ["edgeopt", "operator"]

# ---------------------------------------------------------------- converter-cpu
FROM python AS converter-cpu

ENV TF_CPP_MIN_LOG_LEVEL=1 \
    EDGEOPT_PVC_ROOT=/mnt/edgeopt/pvc

# tensorflow-cpu and the rest of the converter extra, exactly as pinned there.
ARG PIP_CERT
RUN --mount=type=cache,id=edgeopt-wheels,target=/var/cache/edgeopt/wheels \
    python /usr/local/bin/edgeopt-requirements.py converter > /tmp/requirements.txt \
 && edgeopt-pip-install /tmp/requirements.txt
COPY README.md ./
COPY edgeopt ./edgeopt
RUN pip install --no-cache-dir --no-deps ".[converter]" \
 && rm -rf /src /tmp/*.txt /usr/local/bin/edgeopt-requirements.py /usr/local/bin/edgeopt-pip-install \
 && python -c "import tensorflow as tf; print('TensorFlow', tf.__version__)" \
 && mkdir -p /mnt/edgeopt/pvc \
 && edgeopt --version

WORKDIR /tmp
USER 10001:10001
# The Job passes `-f /etc/edgeopt/model.yaml`; the termination message goes to
# /dev/termination-log, which the operator reads from the Pod status.
ENTRYPOINT ["edgeopt", "convert"]

# ---------------------------------------------------------------- converter
# TF 2.17 is the last TensorFlow with TF-TRT, and NVIDIA's TensorFlow
# containers are the maintained way to get it. The RUN below refuses to build
# if a future tag drops either fact, or TensorRT's Python bindings
# (`import tensorrt`), which build the ONNX path's model.plan.
# tf2onnx/onnx/onnxruntime go in with --no-deps: onnx 1.17 is pinned because
# onnx >= 1.18 needs ml_dtypes >= 0.5, which TF 2.17 forbids.
FROM ${TENSORFLOW_BASE} AS converter

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    EDGEOPT_PVC_ROOT=/mnt/edgeopt/pvc

WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# `--no-deps`: the converter extra pins tensorflow-cpu for laptops and CI; here
# the base image's TensorRT-enabled TensorFlow (and its numpy) must win. The
# remaining small dependencies are installed explicitly.
RUN python -c "import tensorflow as tf, sys; info = tf.sysconfig.get_build_info(); \
sys.exit(0 if tf.__version__.startswith('2.17') and info.get('is_tensorrt_build') else \
'base image must ship TF 2.17 built with TensorRT, got ' + tf.__version__ + ' ' + repr(dict(info)))" \
 && python -c "import tensorrt, sys; print('TensorRT', tensorrt.__version__); \
sys.exit(0 if int(tensorrt.__version__.split('.')[0]) >= 8 else 'TensorRT Python bindings too old for ONNX plans')" \
 && pip install --no-deps . \
 && pip install "pyyaml>=6.0" "psutil>=5.9" \
 && pip install --no-deps "tf2onnx==1.17.0" "onnx==1.17.0" "onnxruntime==1.32.0" \
 && python -c "import tf2onnx, onnx, onnxruntime" \
 && rm -rf /src \
 && edgeopt --version

RUN groupadd --system --gid 10001 edgeopt \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edgeopt \
 && mkdir -p /mnt/edgeopt/pvc
WORKDIR /tmp
USER 10001:10001

ENTRYPOINT ["edgeopt", "convert"]

# ---------------------------------------------------------------- triton-cpu
# The tritonserver (2.51) of the nvidia-pytriton wheel, laid out as NGC lays
# out /opt/tritonserver: bin/, backends/python/ with the stub for this Python
# (the wheel keeps one stub per Python version aside), and the wheel's shared
# libraries on LD_LIBRARY_PATH. The stub finds its Python (and so TensorFlow)
# through `python3` on PATH. /opt/tritonserver/backends is Triton's default
# --backend-directory. See edgeopt/triton/server.py for the same on a host.
FROM python AS triton-cpu

ENV TF_CPP_MIN_LOG_LEVEL=2
# The pip set of Triton's Python environment: TensorFlow, onnxruntime, openvino and numpy
# exactly as the converter extra pins them (the models it publishes import them).
ARG PIP_CERT
RUN --mount=type=cache,id=edgeopt-wheels,target=/var/cache/edgeopt/wheels \
    python /usr/local/bin/edgeopt-requirements.py converter \
    | grep -E '^(tensorflow-cpu|onnxruntime|openvino|numpy)[=<>; ]' > /tmp/requirements.txt \
 && echo "nvidia-pytriton==0.7.0" > /tmp/pytriton.txt \
 && edgeopt-pip-install /tmp/requirements.txt \
 && edgeopt-pip-install /tmp/pytriton.txt --no-deps \
 && python -c "import tensorflow, onnxruntime, openvino; print('TensorFlow', tensorflow.__version__, 'onnxruntime', onnxruntime.__version__, 'openvino', openvino.__version__)"
RUN site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
 && py=$(python -c "import sys; print('%d.%d' % sys.version_info[:2])") \
 && mkdir -p /opt/tritonserver/bin \
 && ln -s "$site/pytriton/tritonserver/bin/tritonserver" /opt/tritonserver/bin/tritonserver \
 && ln -s "$site/nvidia_pytriton.libs" /opt/tritonserver/lib \
 && cp -r "$site/pytriton/tritonserver/backends" /opt/tritonserver/backends \
 && cp "$site/pytriton/tritonserver/python_backend_stubs/$py/triton_python_backend_stub" /opt/tritonserver/backends/python/ \
 && rm -rf "$site/pytriton/tritonserver/python_backend_stubs" /opt/tritonserver/backends/python/__pycache__
COPY README.md ./
COPY edgeopt ./edgeopt
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf /src /tmp/*.txt /usr/local/bin/edgeopt-requirements.py /usr/local/bin/edgeopt-pip-install \
 && edgeopt --version

ENV PATH=/opt/tritonserver/bin:$PATH \
    LD_LIBRARY_PATH=/opt/tritonserver/lib
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]

# ---------------------------------------------------------------- triton
# NGC Triton with TensorFlow and onnxruntime in the Python environment its
# Python backend runs: the NGC image's own Python has neither, so the model.py
# of the default backend fails to import there. Same pip set as triton-cpu,
# with the GPU build of TensorFlow (`tensorflow`, same version as the converter
# extra's tensorflow-cpu pin). pip runs as `python3 -m pip`: python3 is the
# interpreter the backend's stub runs (NGC's image has no `python`), and the
# build checks the imports with it.
FROM ${TRITON_BASE} AS triton

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=2

ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml ./
# The pip set first (its own cached layer, wheels in the build cache mount),
# then edgeopt itself.
RUN --mount=type=cache,id=edgeopt-wheels,target=/var/cache/edgeopt/wheels \
    python3 -c "import sys, tomllib; \
reqs = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['converter']; \
print('\n'.join(r.replace('tensorflow-cpu', 'tensorflow', 1) for r in reqs \
if r.split(';')[0].split('=')[0].split('<')[0].split('>')[0].strip() in ('tensorflow-cpu', 'onnxruntime', 'openvino', 'numpy')))" \
    > /tmp/requirements.txt \
 && echo "pyyaml>=6.0" >> /tmp/requirements.txt \
 && python3 -m pip download --quiet --dest /var/cache/edgeopt/wheels -r /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir --no-index --find-links /var/cache/edgeopt/wheels -r /tmp/requirements.txt \
 && python3 -c "import tensorflow, onnxruntime, openvino; print('TensorFlow', tensorflow.__version__, 'onnxruntime', onnxruntime.__version__, 'openvino', openvino.__version__)" \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY edgeopt ./edgeopt
RUN python3 -m pip install --no-cache-dir --no-deps . \
 && rm -rf /src \
 && edgeopt --version

RUN groupadd --system --gid 10001 edgeopt \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edgeopt
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
