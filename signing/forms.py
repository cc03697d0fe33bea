"""Admin form for signing policies. Every rule and every write goes through the services.

Like the KMS admin's forms, this model form does not run Django's model validation:
``signing.services.policies.create_policy`` / ``update_policy`` decide (they call
``validate_policy``) and write, as the last step of validation, so the admin shows
exactly the messages the API returns and a refusal, including a second policy for a
namespace created concurrently, becomes a form error instead of a 500. The admin's
add/change views run inside ``transaction.atomic``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Exists, OuterRef
from django.utils.html import escape

from config.errors import DomainError, ValidationFailed
from config.forms import server_side_limits
from kms.errors import ServiceNotAuthorized
from kms.models import Key, KeyState, KeyUsage
from registry.models import Instance, Namespace
from signing.errors import KeyNotSuitable, PolicyExists
from signing.models import SigningPolicy
from signing.naming import MAX_LENGTH, MIN_LENGTH
from signing.selectors import suitable_keys
from signing.services.policies import PolicyOutcome, create_policy, update_policy

REGION_ADVICE = (
    "Keep the key and the instance in the same region: a key in another region works, "
    "but every signature is then a cross-region call."
)
# Admin help texts are HTML: the placeholders are escaped, or the browser swallows them
# as unknown tags ("identity (//)").
_IDENTITY = escape("<domain>/<namespace>/<repository>")
DOMAIN_HELP = (
    f"The registry address in every signature's identity ({_IDENTITY}): users must pull "
    "by this name for verification to pass."
)
# Service error fields that have no form field of their own.
FIELD_ALIASES = {"kms_region": "key"}


def key_label(key: Key) -> str:
    label = f"{key.alias} — {key.region} — {key.key_id}"
    if key.key_usage != KeyUsage.RSA_2048 or key.state != KeyState.ENABLED:
        label += f" ({key.state}: cannot sign, choose another key)"
    return label


class NamespaceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Namespace) -> str:
        label = f"{obj.instance.name} / {obj.name} (instance region {obj.instance.region})"
        if getattr(obj, "_has_policy", False):
            label += " — has a policy"
        return label


class SigningPolicyForm(forms.ModelForm):
    """Add and change form. ``namespace`` is only on the add form (it cannot change)."""

    user: Any = None

    name = forms.CharField(
        help_text=(
            f"{MIN_LENGTH}-{MAX_LENGTH} lowercase letters, digits and the separators "
            ". _ - /, not starting or ending with a separator, no two separators in a row."
        ),
    )
    # Plain text fields with select widgets: a value the picker does not offer still
    # reaches the service and gets the service's message ("Key x is disabled; ...").
    key = forms.CharField(
        label="KMS key",
        widget=forms.Select,
        help_text=(
            "Only Enabled keys with usage ASYMMETRIC_SIGN_VERIFY_RSA_2048 are offered "
            "(alias — region — key ID)."
        ),
    )
    domain = forms.CharField(
        label="Domain name",
        required=False,
        widget=forms.Select,
        help_text=f"{DOMAIN_HELP} Blank: the instance's default domain.",
    )

    class Meta:
        model = SigningPolicy
        fields = ["namespace", "name", "key", "domain", "disabled"]
        help_texts = {
            "disabled": "A disabled policy signs nothing automatically; images can still be "
            "signed by hand.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcome: PolicyOutcome | None = None
        server_side_limits(self.fields)
        policy = self.instance if self.instance.pk else None
        if "namespace" in self.fields:
            self.fields["namespace"] = NamespaceChoiceField(
                queryset=Namespace.objects.select_related("instance")
                .annotate(
                    _has_policy=Exists(SigningPolicy.objects.filter(namespace_id=OuterRef("pk")))
                )
                .order_by("instance__name", "name"),
                help_text="One policy per namespace; the instance's region is in brackets.",
            )
        keys = list(suitable_keys().order_by("alias"))
        if policy is not None and policy.key_id not in {key.pk for key in keys}:
            keys.insert(0, policy.key)
        key_field = self.fields["key"]
        key_field.widget.choices = [
            ("", "---------"),
            *((str(key.pk), key_label(key)) for key in keys),
        ]
        if policy is not None:
            key_field.initial = str(policy.key_id)
        self.fields["domain"].widget.choices = self._domain_choices(policy)

    def _domain_choices(self, policy: SigningPolicy | None) -> list:
        if policy is not None:
            domains = policy.namespace.instance.domain_names()
            if policy.domain not in domains:
                domains.insert(0, policy.domain)
            self.fields["domain"].required = True
            self.fields["domain"].help_text = (
                f"{DOMAIN_HELP} Changing it applies to new signatures; re-sign to update "
                "existing ones."
            )
            return [(domain, domain) for domain in domains]
        choices: list = [("", "The instance's default domain")]
        for instance in Instance.objects.prefetch_related("domains").order_by("name"):
            names = instance.domain_names()
            choices.append((f"Instance {instance.name}", [(name, name) for name in names]))
        return choices

    # --- validation + write through the services ---------------------------------------

    def add_domain_error(self, exc: DomainError) -> None:
        if isinstance(exc, PolicyExists):
            self._add(["namespace"], exc.message)
            return
        if isinstance(exc, KeyNotSuitable | ServiceNotAuthorized):
            self._add(["key"], exc.message)
            return
        if isinstance(exc, ValidationFailed) and exc.fields:
            for name, problems in exc.fields.items():
                for problem in problems:
                    self._add([FIELD_ALIASES.get(name, name)], problem)
            return
        self.add_error(None, exc.message)

    def _add(self, names: list[str], message: str) -> None:
        target = next((name for name in names if name in self.fields), None)
        self.add_error(target, message)

    def _post_clean(self) -> None:
        # Replaces ModelForm's model validation: the service decides and writes.
        if self.errors:
            return
        try:
            self.outcome = self.apply()
        except DomainError as exc:
            self.add_domain_error(exc)
            return
        self.instance = self.outcome.policy

    def apply(self) -> PolicyOutcome:
        data = self.cleaned_data
        if self.instance.pk:
            return update_policy(
                policy=self.instance,
                name=data["name"],
                key=data["key"],
                domain=data.get("domain") or None,
                disabled=data.get("disabled", False),
            )
        return create_policy(
            namespace=data["namespace"],
            name=data["name"],
            key=data["key"],
            domain=data.get("domain") or None,
            disabled=data.get("disabled", False),
            created_by=self.user,
        )
