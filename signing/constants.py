"""Fixed values the signing services and selectors share."""

from __future__ import annotations

from kms.models import AuthorizedService
from signing.errors import ManifestNotVerified, ManifestUnknown

SIGNING_ALGORITHM = "RSA_PKCS1_SHA_256"
SERVICE = AuthorizedService.REGISTRY_SIGNING
# How long a worker holds a claimed row before another may take it.
CLAIM_SECONDS = 300
# Failures that mean "the registry does not hold (or cannot prove) this image": retried a
# bounded number of times (SIGNING_MANIFEST_CHECK_ATTEMPTS), then left failed and visible.
UNVERIFIED_CODES = (ManifestUnknown.code, ManifestNotVerified.code)
