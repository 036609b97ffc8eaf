"""What the handlers share (settings, the API wrapper, small caches), and the resource as the operator reads it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeopt.operator import tenancy
from edgeopt.operator.kube import Kube
from edgeopt.operator.queueing import SlotClass, SlotLedger
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import API_VERSION, KIND, OptimizedModel, parse_manifest, precision_of, uses_onnx

#: (namespace, "job/<name>" or "pod/<name>"): what the seen cache is keyed by.
SeenKey = tuple[str, str]


class Seen:
    """The last state acted upon per Job or Pod: avoids re-reading the model on every watch event.

    A cache only: forgetting an entry costs one more read, never a wrong status. Thread-safe enough
    for kopf's workers (single dict operations).
    """

    def __init__(self) -> None:
        self._last: dict[SeenKey, str] = {}

    @staticmethod
    def key(obj: Mapping[str, Any], kind: str) -> SeenKey:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), f"{kind}/{meta.get('name') or ''}")

    def same(self, key: SeenKey, state: str) -> bool:
        return self._last.get(key) == state

    def remember(self, key: SeenKey, state: str) -> None:
        self._last[key] = state

    def forget(self, obj: Mapping[str, Any], kind: str) -> None:
        """``kind``: "job" or "pod"; the next event of that object is acted upon again."""
        self._last.pop(self.key(obj, kind), None)

    def __len__(self) -> int:
        return len(self._last)


@dataclass
class Runtime:
    """What the handlers share: settings, the API wrapper and small caches."""

    settings: OperatorSettings
    kube: Kube
    capacity_lock: threading.Lock = field(default_factory=threading.Lock)
    slots: SlotLedger = field(default_factory=SlotLedger)
    seen: Seen = field(default_factory=Seen)
    #: (uid, generation) -> its slot class (None: Kueue's or invalid); see conversion.queue_entry.
    slot_classes: dict[tuple[str, int], SlotClass | None] = field(default_factory=dict)


def model_from_body(body: Mapping[str, Any]) -> OptimizedModel:
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": dict(body.get("spec") or {}),
    }
    return parse_manifest(doc)


def serving_url(settings: OperatorSettings, model: OptimizedModel) -> str | None:
    """The Triton to talk to; a spec URL outside the allow-list is never contacted (no SSRF)."""
    url = model.spec.serving.triton_url
    if url and not tenancy.triton_url_allowed(url, settings):
        return None
    return url or settings.triton_url


def triton_url(rt: Runtime, model: OptimizedModel) -> str | None:
    return serving_url(rt.settings, model)


def effective_precision(model: OptimizedModel) -> str:
    # The ONNX path converts to its precision with or without TensorRT; the TF path only through TF-TRT.
    return precision_of(model.spec) if model.spec.tensorrt.enabled or uses_onnx(model.spec) else "FP32"
