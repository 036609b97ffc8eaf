"""The real API machinery the operator depends on: CRDs, garbage collection, RBAC with TokenRequest."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.common import wait_for

pytestmark = pytest.mark.k8s

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.edgeopt.io}
spec:
  group: test.edgeopt.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, maximum: 8}
"""


def widget(size: int) -> str:
    return f"apiVersion: test.edgeopt.io/v1\nkind: Widget\nmetadata: {{name: w{size}}}\nspec: {{size: {size}}}\n"


def test_crd_applied_with_kubectl_becomes_established_and_validates(kubectl, namespace):
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.test.edgeopt.io", "--timeout=30s")
    # Discovery may lag Established by a moment.
    wait_for(lambda: kubectl("apply", "-n", namespace, "-f", "-", input=widget(3)), timeout=15, what="a valid Widget")
    bad = kubectl("apply", "-n", namespace, "-f", "-", input=widget(99), check=False)
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr and "less than or equal to 8" in bad.stderr


def test_deleting_an_owner_deletes_its_dependents(k8s_client, namespace):
    core = client.CoreV1Api(k8s_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(dependent_gone, timeout=30, what="the garbage collector to delete the dependent")
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_service_account_is_denied_without_a_role_and_allowed_with_one(control_plane, k8s_client, namespace):
    core = client.CoreV1Api(k8s_client)
    rbac = client.RbacAuthorizationV1Api(k8s_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"k": "v"}})
    request = {"spec": {"expirationSeconds": 600}}
    token = wait_for(
        lambda: core.create_namespaced_service_account_token("reader", namespace, request).status.token,
        timeout=15,
        what="a TokenRequest for the service account",
    )
    cfg = client.Configuration()
    cfg.host = control_plane.server
    cfg.ssl_ca_cert = str(control_plane.ca_file)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.CoreV1Api(client.ApiClient(cfg))

    with pytest.raises(ApiException) as denied:
        as_sa.list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in str(denied.value.body)

    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    listed = wait_for(lambda: as_sa.list_namespaced_config_map(namespace), timeout=15, what="the Role to apply")
    assert "settings" in [cm.metadata.name for cm in listed.items]
    # The Role is namespaced: elsewhere, and for other verbs, still denied.
    with pytest.raises(ApiException) as elsewhere:
        as_sa.list_namespaced_config_map("default")
    assert elsewhere.value.status == 403
    with pytest.raises(ApiException) as write:
        as_sa.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}})
    assert write.value.status == 403
