"""Input data for validation, latency runs and INT8 calibration, TensorFlow-free.

Validation and calibration must feed the model arrays that fit its inputs:
either the user's samples (a ``.npy`` for a one-input model, a ``.npz`` keyed
by input name) or seeded random data shaped like the declared inputs, with
``-1`` replaced by a small batch (first dimension) or a small size (others).
Everything here is numpy only, so it is unit-tested without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter.dtypes import numpy_dtype
from edgeopt.errors import InputError

#: Batch used for -1 in the first dimension of random inputs.
DEFAULT_BATCH = 2
#: Size used for -1 in any other dimension (e.g. image height/width).
DEFAULT_FILL = 32


def concrete_shape(
    shape: Sequence[int] | None, batch: int = DEFAULT_BATCH, fill: int = DEFAULT_FILL
) -> tuple[int, ...]:
    """A shape with -1 replaced: the first dimension by ``batch``, any other by ``fill``."""
    if shape is None:
        raise InputError("an input has unknown rank; declare its shape in spec.source.inputs")
    return tuple((batch if i == 0 else fill) if d is None or d < 0 else int(d) for i, d in enumerate(shape))


def random_inputs(
    inputs: Sequence[TensorInfo], *, batch: int = DEFAULT_BATCH, seed: int = 0, fill: int = DEFAULT_FILL
) -> dict[str, np.ndarray]:
    """Seeded random arrays shaped like ``inputs``: N(0,1) floats, small non-negative ints, coin-flip bools."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in inputs:
        shape = concrete_shape(t.shape, batch, fill)
        np_dtype = numpy_dtype(t.dtype)
        if np_dtype.startswith("float"):
            out[t.name] = np.asarray(rng.standard_normal(shape).astype(np_dtype))
        elif np_dtype == "bool":
            out[t.name] = rng.integers(0, 2, shape).astype(bool)
        elif np_dtype == "object":
            out[t.name] = np.array([b"x"] * int(np.prod(shape)), dtype=object).reshape(shape)
        else:
            out[t.name] = rng.integers(0, 8, shape).astype(np_dtype)
    return out


def load_sample_file(path: Path, inputs: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """Read a ``.npy`` (one-input models) or ``.npz`` (arrays named like the inputs)."""
    if not path.exists():
        raise InputError(f"calibration data {path} does not exist")
    _check_caps(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        elif path.suffix == ".npy":
            if len(inputs) != 1:
                raise InputError(
                    f"calibration data {path} is a .npy (one array) but the model has {len(inputs)} inputs "
                    f"({', '.join(t.name for t in inputs)}); use a .npz with one array per input name"
                )
            data = {inputs[0].name: np.load(path, allow_pickle=False)}
        else:
            raise InputError(f"calibration data {path} must be a .npy or .npz file")
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"calibration data {path} cannot be read: {exc}") from exc
    missing = [t.name for t in inputs if t.name not in data]
    if missing:
        raise InputError(
            f"calibration data {path} has no array for input(s) {', '.join(missing)}; "
            f"it holds {', '.join(sorted(data)) or 'nothing'}"
        )
    return check_arrays({t.name: data[t.name] for t in inputs}, inputs, what=str(path))


def _check_caps(path: Path) -> None:
    """Refuse an oversized .npy, or a .npz with too many or too large members, before numpy reads it."""
    import zipfile

    from edgeopt.limits import Limits, check_sample_file

    members = None
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [(i.filename, i.file_size) for i in zf.infolist()]
        except (OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"calibration data {path} is not a readable .npz ({exc})") from exc
    check_sample_file(str(path), path.stat().st_size, members, Limits.from_env())


def check_arrays(arrays: dict[str, np.ndarray], inputs: Sequence[TensorInfo], *, what: str) -> dict[str, np.ndarray]:
    """Check rank and fixed dimensions, cast to the input dtype, and check all share one batch size."""
    batch: int | None = None
    out: dict[str, np.ndarray] = {}
    for t in inputs:
        arr = np.asarray(arrays[t.name])
        if t.shape is not None:
            if arr.ndim != len(t.shape):
                raise InputError(
                    f"{what}: array {t.name!r} has shape {list(arr.shape)} but input {t.name} has shape {t.shape}"
                )
            for i, (got, want) in enumerate(zip(arr.shape, t.shape, strict=False)):
                if want >= 0 and got != want:
                    raise InputError(
                        f"{what}: array {t.name!r} has shape {list(arr.shape)} but input {t.name} has "
                        f"shape {t.shape} (dimension {i}: {got} != {want})"
                    )
        target = numpy_dtype(t.dtype)
        if target != "object":
            if arr.dtype.kind in "fc" and np.dtype(target).kind in "iub":
                raise InputError(f"{what}: array {t.name!r} is {arr.dtype} but input {t.name} is {t.dtype}")
            arr = arr.astype(target)
        if arr.ndim == 0:
            if t.shape != []:
                raise InputError(f"{what}: array {t.name!r} is a scalar; samples need a batch dimension")
            out[t.name] = arr  # a rank-0 input takes exactly one sample: it has no batch dimension
            continue
        if batch is not None and arr.shape[0] != batch:
            raise InputError(f"{what}: arrays disagree on the number of samples ({batch} vs {arr.shape[0]})")
        batch = arr.shape[0]
        out[t.name] = arr
    return out


def batch_size(arrays: dict[str, np.ndarray]) -> int:
    """Rows in a feed: the leading dimension, or 1 when every array is rank 0 (a scalar model)."""
    return next((int(v.shape[0]) for v in arrays.values() if np.ndim(v) >= 1), 1)


def first_sample(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The first row of every array; rank-0 arrays are one sample already and stay as they are."""
    return {k: np.asarray(v) if np.ndim(v) == 0 else v[:1] for k, v in arrays.items()}


def take_samples(arrays: dict[str, np.ndarray], samples: int) -> dict[str, np.ndarray]:
    """The first ``samples`` rows of every array (fewer if the file holds fewer)."""
    return {k: v if np.ndim(v) == 0 else v[:samples] for k, v in arrays.items()}


def split_batches(arrays: dict[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Cut aligned arrays into consecutive batches of at most ``batch_size`` rows."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not arrays:
        return []
    n = len(next(iter(arrays.values())))
    return [{k: v[i : i + batch_size] for k, v in arrays.items()} for i in range(0, n, batch_size)]
