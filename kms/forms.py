"""Admin forms for the KMS. Every rule and every write goes through ``kms.services``.

The model forms here do not run Django's model validation: the services own
the rules, so the admin shows exactly the messages the API returns. A form
that writes (``ServiceModelForm``) calls its service as the *last step of
validation*; whatever the service refuses, including an alias taken by a
concurrent request between the check and the insert, becomes a form error
instead of a 500. The admin's change view runs inside ``transaction.atomic``,
so nothing written by a form outlives a failure later in the request.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from config.errors import DomainError, ValidationFailed
from config.forms import server_side_limits
from kms.errors import AliasAlreadyExists
from kms.models import AuthorizedService, Key, KeyUsage, ServiceAuthorization
from kms.services.authorization import active_service_authorization, grant_service_authorization
from kms.services.keys import create_key, update_key_description, validate_key_fields
from kms.services.states import MAX_PENDING_WINDOW_DAYS, MIN_PENDING_WINDOW_DAYS


def _region_choices() -> list[tuple[str, str]]:
    return [(region, region) for region in settings.KMS_REGIONS]


class ServiceModelForm(forms.ModelForm):
    """A model form whose save is a service call made when the form validates.

    Subclasses implement :meth:`apply`, which calls the service and returns the
    saved object; the admin sets :attr:`user` to the requesting user.
    """

    user: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server_side_limits(self.fields)

    def apply(self) -> Any:
        raise NotImplementedError

    def add_domain_error(self, exc: DomainError) -> None:
        fields = exc.fields if isinstance(exc, ValidationFailed) else {}
        placed = False
        for name, messages in fields.items():
            if name in self.fields and name not in self.errors:
                self.add_error(name, messages)
                placed = True
        if not placed:
            self.add_error(None, exc.message)

    def _post_clean(self) -> None:
        # Replaces ModelForm's model validation: the service decides and writes.
        if self.errors:
            return
        try:
            self.instance = self.apply()
        except DomainError as exc:
            self.add_domain_error(exc)


class KeyCreateForm(ServiceModelForm):
    # Plain text fields with select widgets: an unknown value reaches the
    # service's validation and gets the same message as through the API.
    region = forms.CharField(widget=forms.Select)
    key_usage = forms.CharField(
        widget=forms.Select(choices=KeyUsage.choices), initial=KeyUsage.RSA_2048
    )

    class Meta:
        model = Key
        fields = ["alias", "description", "region", "key_usage"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        region = self.fields["region"]
        region.widget.choices = _region_choices()
        region.initial = settings.KMS_DEFAULT_REGION
        self.fields["alias"].help_text = (
            "1-60 letters, digits, '-' or '_', starting with a letter or digit. "
            "Cannot be changed later."
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors:
            try:
                validate_key_fields(
                    alias=cleaned["alias"],
                    description=cleaned.get("description", ""),
                    region=cleaned["region"],
                    key_usage=cleaned["key_usage"],
                )
            except ValidationFailed as exc:
                self.add_domain_error(exc)
        return cleaned

    def add_domain_error(self, exc: DomainError) -> None:
        if isinstance(exc, AliasAlreadyExists):
            self.add_error("alias", exc.message)
        else:
            super().add_domain_error(exc)

    def apply(self) -> Key:
        data = self.cleaned_data
        return create_key(
            alias=data["alias"],
            description=data.get("description", ""),
            region=data["region"],
            key_usage=data["key_usage"],
            created_by=self.user,
        )


class KeyChangeForm(ServiceModelForm):
    """After creation only the description can change."""

    class Meta:
        model = Key
        fields = ["description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors:
            key = self.instance
            try:
                validate_key_fields(
                    alias=key.alias,
                    description=cleaned.get("description", ""),
                    region=key.region,
                    key_usage=key.key_usage,
                )
            except ValidationFailed as exc:
                self.add_domain_error(exc)
        return cleaned

    def apply(self) -> Key:
        return update_key_description(
            key_id=str(self.instance.pk), description=self.cleaned_data.get("description", "")
        )


class ScheduleDeletionForm(forms.Form):
    """The pending window asked for on the intermediate page of the admin action."""

    pending_window_in_days = forms.IntegerField(
        label="Pending window (days)",
        min_value=MIN_PENDING_WINDOW_DAYS,
        max_value=MAX_PENDING_WINDOW_DAYS,
        initial=MIN_PENDING_WINDOW_DAYS,
        help_text=(
            f"The key is destroyed this many days from now "
            f"({MIN_PENDING_WINDOW_DAYS}-{MAX_PENDING_WINDOW_DAYS}) "
            "unless the deletion is cancelled before."
        ),
    )


class ServiceAuthorizationGrantForm(ServiceModelForm):
    """Adding a service authorization grants it; the record is history afterwards."""

    service = forms.ChoiceField(choices=AuthorizedService.choices)

    class Meta:
        model = ServiceAuthorization
        fields = ["service", "note"]

    def clean_service(self) -> str:
        service = self.cleaned_data["service"]
        active = active_service_authorization(service)
        if active is not None:
            raise forms.ValidationError(
                f"{AuthorizedService(service).label} is already authorized "
                f"(granted {active.granted_at:%Y-%m-%d %H:%M} UTC); revoke that grant first "
                "to record a new one."
            )
        return service

    def apply(self) -> ServiceAuthorization:
        return grant_service_authorization(
            service=self.cleaned_data["service"],
            granted_by=self.user,
            note=self.cleaned_data.get("note", ""),
        )
