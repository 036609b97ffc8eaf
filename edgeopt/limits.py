"""Size caps on untrusted input: model files, sample files, sample counts and folded constants.

A model or a spec can ask the converter for any amount of disk, memory or
time: a 40 GiB "graph", a zip bomb posing as calibration data, a million
validation samples.  Each cap here is an operator setting with a sane
default.  The operator reads the ``EDGEOPT_LIMIT_*`` variables from its own
environment (the chart's ``converter.limits``) and passes them to the
converter Job, so a cluster admin sets them and a tenant cannot.  Every
refusal names the cap and its setting.  Standard library only: the operator
imports this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from edgeopt.errors import InputError, SpecError

#: Operator setting (and converter Job env): comma-separated ops the graph policy refuses that an admin allows.
ALLOWED_OPS_ENV = "EDGEOPT_CONVERTER_ALLOWED_OPS"

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    graph_bytes: int = 2 * GIB  # protobuf cannot parse more anyway
    checkpoint_bytes: int = 16 * GIB  # all of a checkpoint's (or SavedModel's) files together
    keras_bytes: int = 8 * GIB
    sample_file_bytes: int = 4 * GIB  # a .npy, or all of a .npz's members uncompressed
    sample_file_members: int = 64  # arrays in a .npz
    validation_samples: int = 1024
    calibration_samples: int = 4096
    fold_bytes: int = 64 * MIB  # largest constant that folding may materialize

    @staticmethod
    def env_name(field_name: str) -> str:
        return f"EDGEOPT_LIMIT_{field_name.upper()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                raise SpecError(f"{cls.env_name(f.name)}={raw!r}: must be a whole number") from None
            if value < 1:
                raise SpecError(f"{cls.env_name(f.name)}={raw!r}: must be at least 1")
            values[f.name] = value
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The caps as the converter Job's environment (what the operator forwards)."""
        return {self.env_name(f.name): str(getattr(self, f.name)) for f in fields(self)}

    def refuse_size(self, field_name: str, size: int, what: str) -> None:
        """InputError when ``size`` bytes of ``what`` exceed the cap ``field_name``."""
        cap = getattr(self, field_name)
        if size > cap:
            raise InputError(
                f"{what} is {_human(size)}, over the limit of {_human(cap)} (operator setting "
                f"{self.env_name(field_name)}); a cluster admin can raise the limit"
            )

    def refuse_count(self, field_name: str, count: int, what: str) -> None:
        cap = getattr(self, field_name)
        if count > cap:
            raise SpecError(
                f"{what} is {count}, over the limit of {cap} (operator setting {self.env_name(field_name)}); "
                "ask for fewer, or a cluster admin can raise the limit"
            )


def _human(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_sample_counts(validation_samples: int, calibration_samples: int | None, limits: Limits) -> None:
    """The spec's sample counts against the caps (SpecError naming the field and the setting)."""
    limits.refuse_count("validation_samples", validation_samples, "spec.validation.samples")
    if calibration_samples is not None:
        limits.refuse_count("calibration_samples", calibration_samples, "spec.tensorrt.calibration.samples")


def check_sample_file(path: str, size: int, members: list[tuple[str, int]] | None, limits: Limits) -> None:
    """A .npy's size, or a .npz's member count and uncompressed sizes (a zip bomb is refused unread)."""
    if members is None:
        limits.refuse_size("sample_file_bytes", size, f"sample file {path}")
        return
    if len(members) > limits.sample_file_members:
        raise InputError(
            f"sample file {path} holds {len(members)} arrays, over the limit of {limits.sample_file_members} "
            f"(operator setting {Limits.env_name('sample_file_members')})"
        )
    limits.refuse_size("sample_file_bytes", sum(s for _, s in members), f"sample file {path} (uncompressed)")
