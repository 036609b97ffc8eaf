# syntax=docker/dockerfile:1
#
# Two images from one source tree, because the two halves of edgeopt must not
# share dependencies:
#
#   operator   the control plane (kopf, kubernetes client, tritonclient.http).
#              No TensorFlow: it never touches a model file.
#                docker build --target operator  -t edgeopt-operator .
#   converter  the data plane that runs inside the conversion Job. It needs
#              TensorFlow *built with TensorRT*, which pip does not ship (and
#              TF-TRT ends with TF 2.17), so it starts from NVIDIA's
#              TensorFlow container instead of installing tensorflow-cpu.
#                docker build --target converter -t edgeopt-converter .
#
# Both run as a fixed numeric non-root UID so that the chart's
# `runAsNonRoot: true` can be checked by the kubelet, and both work with a
# read-only root filesystem (the chart mounts an emptyDir at /tmp).
# tests/ship/test_dockerfile.py checks targets, users and entrypoints against
# pyproject's [project.scripts] and the CLI's subcommands.

# ---------------------------------------------------------------- operator
# Base images are pinned to exact tags; bump them on purpose, not by accident.
FROM python:3.11.11-slim-bookworm AS operator

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# Only the operator extra. The last command fails the build if anything pulled
# TensorFlow in: the operator image must stay small and TF-free.
RUN pip install ".[operator]" \
 && rm -rf /src \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)" \
 && edgeopt --version

RUN groupadd --system --gid 10001 edgeopt \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edgeopt
WORKDIR /
USER 10001:10001

# kopf liveness endpoint and Prometheus metrics (EDGEOPT_LIVENESS_PORT, EDGEOPT_METRICS_PORT).
EXPOSE 8080 9090
ENTRYPOINT ["edgeopt", "operator"]

# ---------------------------------------------------------------- converter
# NGC TensorFlow 24.12 ships TensorFlow 2.17.0+nv24.12 built with TensorRT
# (TensorRT 10.x, CUDA 12.x, Python 3.12). TF 2.17 is the last TensorFlow with
# TF-TRT, and NVIDIA's TensorFlow containers are the maintained way to get it.
# The RUN below refuses to build if a future tag drops either fact, or TensorRT's
# Python bindings (`import tensorrt`), which build the ONNX path's model.plan.
# tf2onnx/onnx/onnxruntime go in with --no-deps: onnx 1.17 is pinned because
# onnx >= 1.18 needs ml_dtypes >= 0.5, which TF 2.17 forbids.
FROM nvcr.io/nvidia/tensorflow:24.12-tf2-py3 AS converter

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

# The Job passes `-f /etc/edgeopt/model.yaml`; the termination message goes to
# /dev/termination-log, which the operator reads from the Pod status.
ENTRYPOINT ["edgeopt", "convert"]
