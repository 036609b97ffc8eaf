"""Triton model repository and server: what happens after a conversion.

- ``config``: config.pbtxt from the converted model's real signature (pure).
- ``publish``: ``publish_version`` writes a version atomically (staging dir,
  fsync, rename, config last) under a per-model lock, and prunes old versions.
- ``templates/`` (via ``python_model``): the Python-backend model.py files that
  serve a SavedModel with TensorFlow (or an ONNX file with ONNX Runtime) on
  Triton releases without a TF backend, and the batching module they share.
- ``client``: load/unload/ready/index/smoke inference for the operator (no TF).
- ``command``: ``edgeopt triton load|unload|index``, against any running Triton (the
  local one the tests and the demo start is the dev harness's: ``edgeopt-dev serve``).

Nothing here imports TensorFlow at module level.
"""
