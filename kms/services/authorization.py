"""Which services (registry signing) may use KMS keys: granted and revoked by an
administrator, required before a key signs on a service's behalf."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from kms.errors import InvalidParameter, ServiceNotAuthorized
from kms.models import AuthorizedService, ServiceAuthorization

logger = logging.getLogger(__name__)


def active_service_authorization(service: str) -> ServiceAuthorization | None:
    return ServiceAuthorization.objects.filter(service=service, revoked_at__isnull=True).first()


def is_service_authorized(service: str) -> bool:
    return ServiceAuthorization.objects.filter(service=service, revoked_at__isnull=True).exists()


def require_known_service(service: str) -> None:
    if service not in AuthorizedService.values:
        raise InvalidParameter(
            f"Unknown service {service!r}; known services: {', '.join(AuthorizedService.values)}.",
            fields={"service": [f"Unknown service {service!r}."]},
        )


def grant_service_authorization(
    *, service: str, granted_by=None, note: str = ""
) -> ServiceAuthorization:
    """Idempotent: granting an active authorization returns the existing record."""
    require_known_service(service)
    existing = active_service_authorization(service)
    if existing:
        return existing
    try:
        with transaction.atomic():
            grant = ServiceAuthorization.objects.create(
                service=service, granted_by=granted_by, note=note
            )
            audit.record(
                "kms.service_authorization.granted",
                obj=grant,
                object_repr=service,
                actor=granted_by,
                details={"service": service, "note": note},
            )
    except IntegrityError:
        existing = active_service_authorization(service)
        assert existing is not None
        return existing
    logger.info("kms service authorization granted service=%s", service)
    return grant


def revoke_service_authorization(*, service: str, revoked_by=None) -> ServiceAuthorization | None:
    require_known_service(service)
    with transaction.atomic():
        grant = (
            ServiceAuthorization.objects.select_for_update()
            .filter(service=service, revoked_at__isnull=True)
            .first()
        )
        if grant is None:
            return None
        grant.revoked_at = timezone.now()
        grant.revoked_by = revoked_by
        grant.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(
            "kms.service_authorization.revoked",
            obj=grant,
            object_repr=service,
            actor=revoked_by,
            details={"service": service},
        )
    logger.info("kms service authorization revoked service=%s", service)
    return grant


def require_service_authorization(service: str) -> None:
    if not is_service_authorized(service):
        label = AuthorizedService(service).label if service in AuthorizedService.values else service
        raise ServiceNotAuthorized(
            f"The {label} is not authorized to use KMS keys. An administrator must grant it: "
            f"Admin > Key management (KMS) > Service authorizations > Add (service "
            f"'{service}'), or POST /api/v1/kms/service-authorizations/ with "
            f'{{"service": "{service}"}}.',
            service=service,
        )
