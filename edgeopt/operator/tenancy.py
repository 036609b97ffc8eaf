"""What a tenant may choose: the operator's allow-lists, checked before any Job exists.

Anyone who may create an OptimizedModel would otherwise choose the image the
Job runs, the nodes it lands on (tolerations, runtimeClassName) and the Triton
URL the operator POSTs to and echoes into status (SSRF). A cluster admin sets
the lists (``EDGEOPT_ALLOWED_*``, chart ``tenancy.*``); the operator's own
defaults are always allowed. A spec outside them fails at once with reason
``NotAllowed`` and names the setting that would allow it. The chart's
ValidatingAdmissionPolicy enforces the image list again at the API server, so
even a bug here cannot create a Job with another image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgeopt.errors import SpecError
from edgeopt.limits import check_sample_counts
from edgeopt.operator.settings import PREFIX, OperatorSettings
from edgeopt.spec import OptimizedModel

_TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")


class NotAllowedError(SpecError):
    """The spec asks for something the operator's allow-lists do not permit."""

    reason = "NotAllowed"


NOT_ALLOWED = NotAllowedError.reason


class NameTakenError(SpecError):
    """Another OptimizedModel has published this model name in the same repository or Triton."""

    reason = "OwnedByAnotherModel"  # the converter's word for the same refusal (ownership.OwnedElsewhereError)


def image_allowed(image: str, patterns: Iterable[str]) -> bool:
    """Exact match, or a prefix match for entries ending in ``*`` (``registry.corp/edgeopt/*``)."""
    for pattern in patterns:
        if pattern.endswith("*") and len(pattern) > 1:
            if image.startswith(pattern[:-1]):
                return True
        elif image == pattern:
            return True
    return False


def _toleration_key(t: Mapping[str, Any]) -> tuple[Any, ...]:
    """Tolerations compare on their meaning: ``operator`` defaults to Equal, absent fields to empty."""
    norm = {k: t.get(k) for k in _TOLERATION_KEYS}
    norm["operator"] = norm["operator"] or "Equal"
    return tuple(("" if norm[k] is None and k != "tolerationSeconds" else norm[k]) for k in _TOLERATION_KEYS)


def toleration_allowed(toleration: Mapping[str, Any], allowed: Iterable[Mapping[str, Any]]) -> bool:
    key = _toleration_key(toleration)
    return any(_toleration_key(a) == key for a in allowed)


def normal_url(url: str) -> str:
    return url.rstrip("/")


def triton_url_allowed(url: str, settings: OperatorSettings) -> bool:
    return normal_url(url) in {normal_url(u) for u in settings.triton_urls()}


def violations(model: OptimizedModel, settings: OperatorSettings) -> list[str]:
    """Each way the spec steps outside the allow-lists, with the setting that would allow it."""
    conv = model.spec.converter
    found: list[str] = []
    if conv.image and not image_allowed(conv.image, settings.converter_images()):
        found.append(
            f"spec.converter.image {conv.image!r} is not an allowed converter image "
            f"(allowed: {', '.join(settings.converter_images())}); a cluster admin can add it to "
            f"{PREFIX}ALLOWED_CONVERTER_IMAGES (chart: tenancy.allowedConverterImages)"
        )
    for i, tol in enumerate(conv.tolerations or []):
        if not toleration_allowed(tol, settings.tolerations_allowed()):
            found.append(
                f"spec.converter.tolerations[{i}] {dict(tol)} is not an allowed toleration; a cluster admin can "
                f"add it to {PREFIX}ALLOWED_TOLERATIONS (chart: tenancy.allowedTolerations)"
            )
    runtime = conv.runtime_class_name
    if runtime and runtime not in settings.runtime_classes():
        found.append(
            f"spec.converter.runtimeClassName {runtime!r} is not allowed "
            f"(allowed: {', '.join(settings.runtime_classes()) or 'none'}); a cluster admin can add it to "
            f"{PREFIX}ALLOWED_RUNTIME_CLASSES (chart: tenancy.allowedRuntimeClasses)"
        )
    found.extend(_file_uris(model))
    found.extend(_over_limits(model, settings))
    url = model.spec.serving.triton_url
    if url and not triton_url_allowed(url, settings):
        found.append(
            f"spec.serving.tritonURL {url!r} is not an allowed Triton endpoint "
            f"(allowed: {', '.join(settings.triton_urls()) or 'none'}); a cluster admin can add it to "
            f"{PREFIX}ALLOWED_TRITON_URLS (chart: tenancy.allowedTritonURLs)"
        )
    return found


def check(model: OptimizedModel, settings: OperatorSettings) -> None:
    """Raise NotAllowedError naming every violation at once (a tenant fixes them in one edit)."""
    found = violations(model, settings)
    if found:
        raise NotAllowedError("; ".join(found))


def _published(obj: Mapping[str, Any], model_name: str) -> bool:
    st = obj.get("status") or {}
    if st.get("modelName") != model_name:
        return False
    published = next((c for c in st.get("conditions") or [] if c.get("type") == "Published"), None)
    return bool(published and published.get("status") == "True")


def publisher_entry(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The publishers index's entry for one OptimizedModel: {its published model name: what the checks read}.

    Empty unless its last publish succeeded. Only the fields ``name_taken`` and ``other_publisher``
    read are kept, so the index stays small and every check is a lookup by name, not a LIST of
    every OptimizedModel in the cluster per conversion.
    """
    st = body.get("status") or {}
    name = st.get("modelName")
    if not name or not _published(body, name):
        return {}
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        name: {
            "metadata": {k: meta.get(k) for k in ("namespace", "name", "uid")},
            "spec": {
                "target": {"repository": (spec.get("target") or {}).get("repository")},
                "serving": {"tritonURL": (spec.get("serving") or {}).get("tritonURL")},
            },
            "status": {
                "modelName": name,
                "conditions": [c for c in st.get("conditions") or [] if c.get("type") == "Published"],
            },
        }
    }


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def other_publisher(models: Iterable[Mapping[str, Any]], me: Mapping[str, Any], model_name: str) -> str | None:
    """``namespace/name`` of another OptimizedModel whose last publish of ``model_name`` succeeded.

    The operator never reads the repository's owner records, so before it
    unloads a model from Triton (whose model names are global) it asks the
    cluster: a resource with Published=True for this name owns what Triton
    serves under it. A tenant refused with OwnedByAnotherModel still has that
    name in its status; deleting it must not unload the owner's model. When in
    doubt the model stays loaded (the safe direction).
    """
    my_uid = (me.get("metadata") or {}).get("uid")
    for obj in models:
        if (obj.get("metadata") or {}).get("uid") != my_uid and _published(obj, model_name):
            return _ref(obj)
    return None


def name_taken(
    models: Iterable[Mapping[str, Any]], me: Mapping[str, Any], model: OptimizedModel, default_url: str | None
) -> str | None:
    """Another resource that has published ``model``'s name where this one would publish or serve it.

    Checked before the Job exists, so a tenant's converter is never given a
    read-write mount of a directory someone else owns: the same repository in
    the same namespace (one claim, one directory), or the same Triton (one
    model name space). Two namespaces whose claims happen to share storage
    without sharing a Triton are caught by the owner record at publish time.
    """
    my_uid = (me.get("metadata") or {}).get("uid")
    my_ns = (me.get("metadata") or {}).get("namespace")
    my_url = normal_url(model.spec.serving.triton_url or default_url or "")
    for obj in models:
        meta = obj.get("metadata") or {}
        if meta.get("uid") == my_uid or not _published(obj, model.model_name):
            continue
        spec = obj.get("spec") or {}
        same_repo = meta.get("namespace") == my_ns and (spec.get("target") or {}).get("repository") == (
            model.spec.target.repository
        )
        url = normal_url((spec.get("serving") or {}).get("tritonURL") or default_url or "")
        if same_repo or (my_url and url == my_url):
            return _ref(obj)
    return None


def check_name(
    models: Iterable[Mapping[str, Any]], me: Mapping[str, Any], model: OptimizedModel, default_url: str | None
) -> None:
    """Raise NameTakenError naming the owner when ``name_taken`` finds one."""
    holder = name_taken(models, me, model, default_url)
    if holder:
        raise NameTakenError(
            f"model name {model.model_name!r} is published by OptimizedModel {holder} in the same repository or "
            "Triton; choose another spec.target.modelName, or ask its owner to delete theirs first"
        )


def _file_uris(model: OptimizedModel) -> list[str]:
    """In a cluster the Job mounts claims only: a file:// URI would read the converter container itself."""
    cal = model.spec.tensorrt.calibration
    uris = {
        "spec.source.uri": model.spec.source.uri,
        "spec.target.repository": model.spec.target.repository,
        "spec.tensorrt.calibration.uri": cal.uri if cal else None,
    }
    return [
        f"{path} {uri!r}: a conversion Job mounts only PersistentVolumeClaims, so a file:// URI would name a "
        "path inside the converter container; use pvc://CLAIM/PATH (file:// is for `edgeopt convert` on a laptop)"
        for path, uri in uris.items()
        if uri and uri.startswith("file://")
    ]


def _over_limits(model: OptimizedModel, settings: OperatorSettings) -> list[str]:
    """Sample counts over the admin's caps (the converter checks them again, and the file sizes)."""
    cal = model.spec.tensorrt.calibration
    try:
        check_sample_counts(model.spec.validation.samples, cal.samples if cal else None, settings.limits)
    except SpecError as exc:
        return [str(exc)]
    return []
