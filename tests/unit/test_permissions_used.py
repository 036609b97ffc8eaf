"""RBAC grants no verb that no code path uses (the other half of test_chart's "grants what it uses").

Used means one of:
- a ``Kube`` method makes the call (``self._call("verb", "resource", ..., self.<api>.fn)``) AND the
  operator calls that method somewhere outside kube.py;
- kopf makes it for what the operator registers with kopf: it lists and watches every resource a
  handler is registered for, patches those with change handlers (finalizer, progress annotations),
  posts Events for ``kopf.event``, observes CRDs and namespaces, and lists/watches/patches its
  peering objects.
A verb in permissions.RULES that none of these explains is dead privilege, and fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import kopf

from edgeopt.operator import kube as kube_module
from edgeopt.operator import permissions

OPERATOR = Path(permissions.__file__).parent
API_GROUPS = {
    "core": "",
    "batch": "batch",
    "custom": "edgeopt.io",
    "kueue": "kueue.x-k8s.io",
    "discovery": "discovery.k8s.io",
}
Triple = tuple[str, str, str]


def kube_calls() -> dict[str, set[Triple]]:
    """Kube method name -> the (group, resource, verb) its ``_call``s make."""
    tree = ast.parse((OPERATOR / "kube.py").read_text())
    kube = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Kube")
    found: dict[str, set[Triple]] = {}
    for method in (n for n in kube.body if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(method) if isinstance(n, ast.Call)):
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "_call"):
                continue
            verb, resource, _what, fn = call.args[:4]
            assert isinstance(verb, ast.Constant) and isinstance(fn, ast.Attribute), ast.dump(call)
            api = fn.value
            assert isinstance(api, ast.Attribute), ast.dump(fn)
            # A literal, or PLURAL / PLURAL + "/status": evaluated with kube's own constant.
            res = eval(compile(ast.Expression(resource), "kube.py", "eval"), {"PLURAL": kube_module.PLURAL})
            found.setdefault(method.name, set()).add((API_GROUPS[api.attr], res, verb.value))
    return found


def called_methods() -> set[str]:
    """Methods used as ``<something>.kube.<name>`` or ``kube.<name>`` in the operator (called, or passed on)."""
    names: set[str] = set()
    for path in OPERATOR.glob("*.py"):
        if path.name == "kube.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                owner = node.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if owner_name == "kube":
                    names.add(node.attr)
    return names


def kopf_uses() -> set[Triple]:
    """What kopf calls for the handlers edgeopt.operator.handlers registers."""
    importlib.import_module("edgeopt.operator.handlers")
    registry = kopf.get_default_registry()
    uses: set[Triple] = set()
    patched = (registry._changing, registry._spawning)  # on.create/update/delete/resume; timers, daemons
    for group in (registry._watching, registry._changing, registry._spawning, registry._indexing):
        for handler in group.get_all_handlers():
            sel = handler.selector
            assert sel is not None and sel.group is not None, handler
            plural = sel.plural or sel.any_name
            assert plural, handler
            uses |= {(sel.group, plural, "list"), (sel.group, plural, "watch")}
            if group in patched:
                uses.add((sel.group, plural, "patch"))
    source = "\n".join(p.read_text() for p in OPERATOR.glob("*.py"))
    if "kopf.event(" in source:
        uses.add(("", "events", "create"))
    if "patch.status" in source:
        uses.add(("edgeopt.io", "optimizedmodels/status", "patch"))
    # kopf's observation of the cluster (kopf/_core/reactor/observation.py).
    for group, plural in (("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")):
        uses |= {(group, plural, "list"), (group, plural, "watch")}
    # Peering (kopf/_core/engines/peering.py): the peering objects are watched, and each replica patches its entry.
    for group in ("kopf.dev", "zalando.org"):
        for plural in ("clusterkopfpeerings", "kopfpeerings"):
            uses |= {(group, plural, v) for v in ("list", "watch", "patch")}
    return uses


def granted() -> set[Triple]:
    # KUEUE_RULES with kueue.enabled; TRITON_RULES and GATE_RULES in a Role in Triton's namespace
    rules = (*permissions.RULES, *permissions.KUEUE_RULES, *permissions.TRITON_RULES, *permissions.GATE_RULES)
    return {(g, r, v) for rule in rules for g in rule.api_groups for r in rule.resources for v in rule.verbs}


def used() -> set[Triple]:
    calls = kube_calls()
    reachable = called_methods()
    mine = {t for name, triples in calls.items() if name in reachable for t in triples}
    return mine | kopf_uses()


def test_kopf_still_works_the_way_this_test_assumes() -> None:
    """If kopf moves its peering or observation code, the assumptions above must be re-read."""
    root = Path(kopf.__file__).parent
    peering = (root / "_core" / "engines" / "peering.py").read_text()
    observation = (root / "_core" / "reactor" / "observation.py").read_text()
    assert "patching.patch_obj(" in peering
    assert "references.CRDS" in observation and "references.NAMESPACES" in observation


def test_every_granted_verb_is_used() -> None:
    unused = granted() - used()
    assert not unused, f"RBAC grants verbs no code path uses; drop them from permissions.RULES and the chart: {unused}"


def test_every_used_verb_is_granted() -> None:
    missing = used() - granted()
    assert not missing, f"the operator uses verbs RBAC does not grant: {sorted(missing)}"


def test_a_dead_kube_method_does_not_count() -> None:
    """The check can fail: a method nobody calls justifies nothing."""
    calls = kube_calls()
    assert ("batch", "jobs", "delete") in calls["delete_job"]
    assert {"delete_job", "read_model"} <= called_methods()
    assert "no_such_method" not in called_methods()
    granted_plus = granted() | {("", "configmaps", "delete")}
    assert granted_plus - used() == {("", "configmaps", "delete")}
