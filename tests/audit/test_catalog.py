"""The fixed lists the admin filters offer (``audit.services.KNOWN_ACTIONS``,
``KNOWN_OBJECT_TYPES``) hold every action code and object type Signet records."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps

from accounts import services as accounts_services
from accounts.models import Role
from apitokens import services as apitoken_services
from audit.models import ACTION_PATTERN, AuditEvent
from audit.services import ACTION_APPS, KNOWN_ACTIONS, KNOWN_OBJECT_TYPES
from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from signing import services as signing_services
from tests.audit.support import REPOSITORY, fake_digest, record_push
from tests.factories import make_key, make_user

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "apitokens", "audit", "config", "kms", "registry", "signing")
DOTTED = re.compile(ACTION_PATTERN)


def _modules() -> list[tuple[Path, ast.Module]]:
    files = sorted(
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    )
    return [(path, ast.parse(path.read_text(), filename=str(path))) for path in files]


def _is_record(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name == "record"


def _assigned(module: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = ...`` / ``NAME: T = ...`` values, by name."""
    values: dict[str, ast.expr] = {}
    for node in module.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and node.value and isinstance(node.target, ast.Name):
            values[node.target.id] = node.value
    return values


def _codes(expression: ast.expr, names: dict[str, ast.expr]) -> set[str]:
    """The dotted-code string constants an action expression can evaluate to: literals in
    it (also in ``a if c else b`` and ``MAPPING.get(k, default)``) and in the module-level
    values of the names it uses."""
    found: set[str] = set()
    for node in ast.walk(expression):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if DOTTED.fullmatch(node.value):
                found.add(node.value)
        elif isinstance(node, ast.Name) and node.id in names:
            found |= _codes(names[node.id], {})
    return found


def _record_calls() -> list[tuple[str, ast.Call, dict[str, ast.expr]]]:
    calls = []
    for path, module in _modules():
        names = _assigned(module)
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and _is_record(node) and node.args:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                calls.append((where, node, names))
    return calls


def test_every_action_code_recorded_in_the_code_base_is_known() -> None:
    recorded: dict[str, set[str]] = {}
    for where, call, names in _record_calls():
        codes = _codes(call.args[0], names)
        assert codes, f"{where}: cannot tell which action code this record() call writes"
        recorded[where] = codes

    used = set().union(*recorded.values())
    unknown = {
        where: codes - set(KNOWN_ACTIONS)
        for where, codes in recorded.items()
        if codes - set(KNOWN_ACTIONS)
    }
    assert not unknown, f"add these to audit.services.KNOWN_ACTIONS: {unknown}"
    # The other way round (which also proves the scan found the services' calls): no
    # code in the list that nothing records any more.
    assert set(KNOWN_ACTIONS) == used
    assert ACTION_APPS == ("accounts", "kms", "registry", "signing", "apitokens")


def test_every_explicit_object_type_recorded_is_known():
    explicit = {
        where: keyword.value.value
        for where, call, _names in _record_calls()
        for keyword in call.keywords
        if keyword.arg == "object_type"
    }
    assert explicit, "the scan found no object_type= argument"
    for where, value in explicit.items():
        assert isinstance(value, str) and value in KNOWN_OBJECT_TYPES, (where, value)


def test_the_model_object_types_name_real_models():
    labels = {model._meta.label_lower for model in apps.get_models()}
    assert set(KNOWN_OBJECT_TYPES) - labels == {"kms.master_key"}  # not a model: a setting


@pytest.mark.django_db
def test_the_services_record_only_known_actions_and_object_types(instance, policy):
    registry_services.rotate_webhook_token(instance=instance)
    accounts_services.grant_membership(
        user=make_user("member"), instance=instance, role=Role.READER
    )
    spare = make_key("spare")
    kms_services.disable_key(key_id=str(spare.key_id))
    manifest = record_push(instance, REPOSITORY, "v1", fake_digest("v1"))
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    signing_services.request_signing(manifests=[manifest])  # fails: not authorized
    holder = make_user("token-holder")
    apitoken_services.issue_token(holder)
    apitoken_services.revoke_user_tokens(holder, reason="catalog test")

    recorded = set(AuditEvent.objects.values_list("action", "object_type"))

    assert {action for action, _type in recorded} <= set(KNOWN_ACTIONS)
    assert {object_type for _action, object_type in recorded} <= {*KNOWN_OBJECT_TYPES, ""}
    # Every model-derived type (all but the master key) was recorded by this scenario.
    assert {object_type for _action, object_type in recorded} == (
        set(KNOWN_OBJECT_TYPES) - {"kms.master_key"}
    )
