"""A lying termination message becomes one Failed status the real CRD accepts, never a 422 retried forever.

No operator runs here: the status patch the operator would send is sent with
its own ``Kube`` wrapper, against the real kube-apiserver and the real CRD.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeopt.operator import status
from edgeopt.operator.kube import Kube, KubeError
from tests.operator.support import Kubectl, apply, example, om

pytestmark = pytest.mark.k8s

LIES = [
    '{"ok": true, "reason": "Published", "message": "", "model": "add", "version": "1; drop", "report": {}}',
    '{"ok": true, "reason": "Published", "message": "", "model": "add", "version": 1, "report": {"opsAfter": "x"}}',
    '{"ok": true, "reason": "TotallyFine", "message": "", "model": "add", "version": 1}',
]


@pytest.mark.parametrize("text", LIES, ids=["version", "report", "reason"])
def test_invalid_job_output_is_one_failed_status(
    kubectl: Kubectl, namespace: str, om_crd: None, k8s_client: Any, text: str
) -> None:
    apply(kubectl, namespace, example(name="liar"))
    kube = Kube(k8s_client)
    summary = status.parse_summary(text, 0, succeeded=True)
    kube.patch_model_status(namespace, "liar", status.job_failed({}, 1, summary))
    obj = om(kubectl, namespace, "liar")
    assert obj["status"]["phase"] == "Failed"
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidJobOutput" and "not a valid edgeopt summary" in ready["message"]


def test_the_unchecked_summary_would_have_been_refused(
    kubectl: Kubectl, namespace: str, om_crd: None, k8s_client: Any
) -> None:
    """What validation prevents: the CRD refuses a string modelVersion with 422 (permanent, so it looped)."""
    apply(kubectl, namespace, example(name="liar"))
    raw = json.loads(LIES[0])
    with pytest.raises(KubeError) as err:
        Kube(k8s_client).patch_model_status(namespace, "liar", {"phase": "Ready", "modelVersion": raw["version"]})
    assert err.value.status == 422 and not err.value.temporary
