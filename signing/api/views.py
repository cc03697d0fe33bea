"""Signing API views: validate with a serializer, call ``signing.services``, render.

Lists run a fixed number of queries whatever their length. Domain errors raised by the
services (PolicyExists 409, InvalidPolicy 400, KeyNotSuitable 409, ServiceNotAuthorized
403, NoSigningPolicy 409, ImageNotFound 404, ...) propagate to
``config.api.exception_handler``, which renders ``{"code", "message", "fields"?}``.

Deleting a policy answers ``200 {"signatures_removed": N}`` (not 204): the number of
signature records removed with it, whose registry artifacts are removed too.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import is_unscoped, scope_model, visible_instances, visible_namespaces
from config.api import id_param as _id_param
from config.api import validated as _validated
from config.errors import ValidationFailed
from config.ids import is_id
from registry.models import Instance, Manifest, Namespace, Tag
from registry.services import InstanceNotFound
from signing import services, verification
from signing.api import serializers as s
from signing.api.permissions import (
    SIGN,
    VIEW_POLICY,
    VIEW_SIGNATURE,
    SigningActionPermission,
)
from signing.errors import ImageNotFound, PolicyNotFound
from signing.models import (
    Signature,
    SignatureStatus,
    SigningPolicy,
    Trigger,
)

MAX_LISTED_SIGNATURES = 1000


def _choice_param(request: Request, name: str, choices: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise ValidationFailed(
            f"Invalid {name}: {value[:40]!r} is not one of {', '.join(choices)}.",
            fields={name: [f"Expected one of {', '.join(choices)}."]},
        )
    return value


def _bool_param(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValidationFailed(
        f"Invalid {name}: expected true or false, got {value[:40]!r}.",
        fields={name: ["Expected true or false."]},
    )


def _instance_filter(request: Request, prefix: str) -> Q | None:
    """``?instance=`` by id or name (instance names start with a letter)."""
    value = request.query_params.get("instance")
    if value in (None, ""):
        return None
    if is_id(value):
        return Q(**{f"{prefix}_id": int(value)})
    return Q(**{f"{prefix}__name": value})


def resolve_instance(ref: int | str, *, as_field_error: bool = False, user: Any = None) -> Instance:
    """The instance ``ref`` names; 404 (or 400 on field ``instance``) when there is none
    (or, with ``user``, when it is outside the user's scope: it answers the same)."""
    instances = Instance.objects.all() if user is None else visible_instances(user)
    instance = (
        instances.filter(pk=ref).first()
        if isinstance(ref, int)
        else instances.filter(name=ref).first()
    )
    if instance is None:
        what = f"id {ref}" if isinstance(ref, int) else f"name {ref!r}"
        message = f"No registry instance with {what}."
        if as_field_error:
            raise ValidationFailed(message, fields={"instance": [message]})
        raise InstanceNotFound(message, instance=str(ref))
    return instance


# --- OpenAPI parameters ------------------------------------------------------------------------


def _query(name: str, description: str, kind: Any = OpenApiTypes.STR) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description)


def _id_query(name: str) -> OpenApiParameter:
    return _query(name, f"Only those of this {name} (its numeric id).", OpenApiTypes.INT)


_INSTANCE = _query("instance", "Only those of this instance (its id or its name).")


# --- policies -------------------------------------------------------------------------------


def policy_queryset() -> QuerySet[SigningPolicy]:
    return (
        SigningPolicy.objects.select_related("namespace__instance", "key", "created_by")
        .defer("key__sealed_private_key")
        .annotate(
            signed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.SIGNED)),
            pending_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.PENDING)),
            failed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.FAILED)),
        )
        .order_by("namespace__instance__name", "namespace__name")
    )


def _listed(field: str, ids: list[int]) -> dict[str, Any]:
    """Each signature's status, for at most ``MAX_LISTED_SIGNATURES`` of ``ids``.

    ``field`` is ``"pk"`` (signature ids) or ``"manifest"`` (manifest ids; one signature
    per manifest, as a namespace has one policy). Slicing the ids first keeps the query
    small however large the request was.
    """
    rows = (
        Signature.objects.filter(**{f"{field}__in": ids[:MAX_LISTED_SIGNATURES]})
        .select_related("manifest__repository")
        .order_by("manifest__repository__name", "manifest__digest", "id")
    )
    return {
        "signatures": s.SignatureStatusSerializer(rows, many=True).data,
        "signatures_truncated": len(ids) > MAX_LISTED_SIGNATURES,
    }


def _sign_result_body(result: services.SignRequestResult, listed: dict[str, Any]) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "requested": result.requested,
        "already_signed": result.already_signed,
        "no_policy": result.no_policy,
        "signed": outcome.signed,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "queued": result.queued,
        "failures": outcome.failures,
        **listed,
    }


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _INSTANCE,
            _id_query("namespace"),
            _query("namespace_name", "Only the policy of the namespace with this name."),
            _query("disabled", "true or false.", OpenApiTypes.BOOL),
        ]
    ),
    create=extend_schema(
        request=s.PolicyCreateSerializer, responses={201: s.PolicyCreatedSerializer}
    ),
    update=extend_schema(request=s.PolicyUpdateSerializer, responses=s.PolicyUpdatedSerializer),
    partial_update=extend_schema(
        request=s.PolicyUpdateSerializer, responses=s.PolicyUpdatedSerializer
    ),
    destroy=extend_schema(responses=s.PolicyDeletedSerializer),
    delete_preview=extend_schema(responses=s.PolicyDeletePreviewSerializer),
    resign=extend_schema(request=None, responses=s.SignResultSerializer),
    retry=extend_schema(request=None, responses=s.PolicyRetryResultSerializer),
)
class PolicyViewSet(viewsets.GenericViewSet):
    """Namespace signing policies (TCR Create/Describe/Modify/DeleteSignaturePolicy)."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action_permissions = {
        "list": VIEW_POLICY,
        "retrieve": VIEW_POLICY,
        "metadata": VIEW_POLICY,
        "delete_preview": VIEW_POLICY,
        "create": "signing.add_signingpolicy",
        "partial_update": "signing.change_signingpolicy",
        "update": "signing.change_signingpolicy",
        "destroy": "signing.delete_signingpolicy",
        "resign": SIGN,
        "retry": SIGN,
    }
    serializer_class = s.PolicySerializer
    _throttle_scopes = {"resign": "bulk-sign", "retry": "bulk-sign"}

    def get_throttles(self):
        self.throttle_scope = self._throttle_scopes.get(self.action or "")
        return super().get_throttles()

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return s.PolicyCreateSerializer
        if self.action in ("update", "partial_update"):
            return s.PolicyUpdateSerializer
        return s.PolicySerializer

    def get_queryset(self) -> QuerySet[SigningPolicy]:
        queryset = scope_model(policy_queryset(), self.request.user)
        where = _instance_filter(self.request, "namespace__instance")
        if where is not None:
            queryset = queryset.filter(where)
        namespace = _id_param(self.request, "namespace")
        if namespace is not None:
            queryset = queryset.filter(namespace_id=namespace)
        if self.request.query_params.get("namespace_name"):
            queryset = queryset.filter(namespace__name=self.request.query_params["namespace_name"])
        disabled = _bool_param(self.request, "disabled")
        if disabled is not None:
            queryset = queryset.filter(disabled=disabled)
        return queryset

    def get_object(self) -> SigningPolicy:
        try:
            return super().get_object()
        except Http404:
            raise PolicyNotFound(f"No signing policy with id {self.kwargs['pk']}.") from None

    def _render(self, policy: SigningPolicy, **extra: Any) -> dict[str, Any]:
        fresh = policy_queryset().get(pk=policy.pk)
        return {**s.PolicySerializer(fresh).data, **extra}

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.PolicySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.PolicySerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        """Validated exactly as in the admin (``signing.services.create_policy``).

        The answer adds ``warnings`` (for example a key in another region).
        """
        data = _validated(s.PolicyCreateSerializer, request)
        instance = resolve_instance(data["instance"], as_field_error=True, user=request.user)
        namespace = (
            visible_namespaces(request.user)
            .filter(instance=instance, name=data["namespace"])
            .first()
        )
        if namespace is None:
            message = f"Instance {instance.name} has no namespace {data['namespace']!r}."
            raise ValidationFailed(message, fields={"namespace": [message]})
        if not request.user.has_perm("signing.add_signingpolicy", namespace):
            raise PermissionDenied(
                f"Creating a policy in namespace {namespace.name} needs the operator role."
            )
        outcome = services.create_policy(
            namespace=namespace,
            name=data["name"],
            key=data["key"],
            domain=data["domain"] or None,
            kms_region=data["kms_region"] or None,
            disabled=data["disabled"],
            created_by=request.user,
        )
        return Response(
            self._render(outcome.policy, warnings=outcome.warnings),
            status=status.HTTP_201_CREATED,
        )

    def partial_update(self, request: Request, pk: str) -> Response:
        """Change name, key, domain or disabled. ``resign_candidates`` counts the images
        signed with another key than the policy's (re-sign them with ``resign``)."""
        policy = self.get_object()
        data = _validated(s.PolicyUpdateSerializer, request)
        outcome = services.update_policy(policy=policy, **data)
        return Response(
            self._render(
                outcome.policy,
                warnings=outcome.warnings,
                resign_candidates=outcome.resign_candidates,
            )
        )

    update = partial_update

    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes the policy, its signature records and their registry artifacts."""
        removed = services.delete_policy(policy=self.get_object())
        return Response({"signatures_removed": removed})

    @action(detail=True, methods=["get"], url_path="delete-preview")
    def delete_preview(self, request: Request, pk: str) -> Response:
        policy = self.get_object()
        count = services.signatures_removed_by_deleting(policy)
        return Response(
            {
                "signatures_to_remove": count,
                "warning": (
                    f"Deleting policy {policy.name} removes the {count} signature(s) of "
                    f"namespace {policy.namespace.name} (records and registry artifacts); "
                    "verifying those images will then fail."
                ),
            }
        )

    @action(detail=True, methods=["post"])
    def resign(self, request: Request, pk: str) -> Response:
        """Re-sign, with the policy's current key, every image an earlier key signed."""
        policy = self.get_object()
        result = services.resign_policy(policy=policy, actor=request.user)
        return Response(_sign_result_body(result, _listed("pk", result.signature_ids)))

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Sign the policy's failed signatures again, now (no backoff wait)."""
        policy = self.get_object()
        failed = list(policy.signatures.filter(status=SignatureStatus.FAILED).only("id"))
        outcome = services.retry_now(signatures=failed)
        return Response(
            {
                "retried": len(failed),
                "signed": outcome.signed,
                "failed": outcome.failed,
                "skipped": outcome.skipped,
                "failures": outcome.failures,
                **_listed("pk", [row.pk for row in failed]),
            }
        )


# --- signatures ------------------------------------------------------------------------------


def signature_queryset() -> QuerySet[Signature]:
    return (
        Signature.objects.select_related(
            "policy__namespace__instance", "manifest__repository", "triggered_by"
        )
        .prefetch_related(
            Prefetch("manifest__tags", queryset=Tag.objects.only("id", "name", "manifest_id"))
        )
        .order_by("-updated_at", "-id")
    )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=SignatureStatus.values,
                description="Only this status.",
            ),
            OpenApiParameter(
                "trigger",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=Trigger.values,
                description="Only this trigger.",
            ),
            _id_query("policy"),
            _INSTANCE,
            _id_query("namespace"),
            _query("namespace_name", "Only signatures of the namespace with this name."),
            _id_query("repository"),
            _query("repository_name", "Only signatures of this repository (its full name)."),
            _query("digest", "Only signatures of the manifest with this digest."),
        ]
    ),
    retry=extend_schema(request=None, responses=s.SignatureRetryResultSerializer),
)
class SignatureViewSet(viewsets.ReadOnlyModelViewSet):
    """Signature records. Filters: status, trigger, policy, instance (id or name),
    namespace (id), namespace_name, repository (id), repository_name, digest."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action_permissions = {
        "list": VIEW_SIGNATURE,
        "retrieve": VIEW_SIGNATURE,
        "metadata": VIEW_SIGNATURE,
        "retry": SIGN,
    }
    serializer_class = s.SignatureSerializer

    def get_throttles(self):
        self.throttle_scope = "sign" if self.action == "retry" else None
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[Signature]:
        queryset = scope_model(signature_queryset(), self.request.user)
        request = self.request
        params = request.query_params
        value = _choice_param(request, "status", SignatureStatus.values)
        if value:
            queryset = queryset.filter(status=value)
        value = _choice_param(request, "trigger", Trigger.values)
        if value:
            queryset = queryset.filter(trigger=value)
        policy = _id_param(request, "policy")
        if policy is not None:
            queryset = queryset.filter(policy_id=policy)
        where = _instance_filter(request, "policy__namespace__instance")
        if where is not None:
            queryset = queryset.filter(where)
        namespace = _id_param(request, "namespace")
        if namespace is not None:
            queryset = queryset.filter(policy__namespace_id=namespace)
        if params.get("namespace_name"):
            queryset = queryset.filter(policy__namespace__name=params["namespace_name"])
        repository = _id_param(request, "repository")
        if repository is not None:
            queryset = queryset.filter(manifest__repository_id=repository)
        if params.get("repository_name"):
            queryset = queryset.filter(manifest__repository__name=params["repository_name"])
        if params.get("digest"):
            queryset = queryset.filter(manifest__digest=params["digest"])
        return queryset

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Sign this row now (a failed or pending one; a signed one is left as it is)."""
        signature = self.get_object()
        outcome = services.retry_now(signatures=[signature])
        fresh = signature_queryset().get(pk=signature.pk)
        return Response(
            {
                "signed": outcome.signed,
                "failed": outcome.failed,
                "skipped": outcome.skipped,
                "signature": s.SignatureSerializer(fresh).data,
            }
        )


# --- signing on demand -----------------------------------------------------------------------


def _sign_manifests(manifests: list[Manifest], request: Request) -> Response:
    result = services.request_signing(
        manifests=manifests, trigger=Trigger.MANUAL, actor=request.user
    )
    covered = services.manifests_with_children(manifests)
    return Response(_sign_result_body(result, _listed("manifest", [m.pk for m in covered])))


def _describe_scope(data: dict[str, Any], instance: Instance) -> str:
    namespace = data["namespace"]
    repository = data.get("repository")
    if repository and not repository.startswith(f"{namespace}/"):
        repository = f"{namespace}/{repository}"
    if data.get("tags"):
        return f"tag(s) {', '.join(data['tags'])} of repository {repository}"
    if repository:
        return f"repository {repository}"
    return f"namespace {namespace}"


def _require_sign(request: Request, tags: list[Tag]) -> None:
    """403 unless the user may sign in every namespace of ``tags`` (all in its scope)."""
    if is_unscoped(request.user):
        return
    allowed = set(visible_namespaces(request.user, perm=SIGN).values_list("pk", flat=True))
    refused = sorted(
        {
            tag.manifest.repository.namespace.name
            for tag in tags
            if tag.manifest.repository.namespace_id not in allowed
        }
    )
    if refused:
        raise PermissionDenied(
            f"Signing in namespace(s) {', '.join(refused)} needs the operator role."
        )


class SignView(APIView):
    """``POST sign/``: TCR CreateSignature for a tag, a list of tags, a repository or a
    whole namespace. Signs synchronously up to ``SIGNING_SYNC_LIMIT`` images, queues the
    rest (``queued``); answers the counts and each signature's status."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "sign"
    action_permissions = {"sign": SIGN}
    throttle_scope = "sign"

    @extend_schema(request=s.SignSerializer, responses=s.SignResultSerializer)
    def post(self, request: Request) -> Response:
        data = _validated(s.SignSerializer, request)
        instance = resolve_instance(data["instance"], user=request.user)
        tags = list(
            scope_model(
                services.tags_in_scope(
                    instance=instance,
                    namespace=data["namespace"],
                    repository=data.get("repository"),
                    tags=data.get("tags"),
                ),
                request.user,
            )
        )
        wanted = data.get("tags")
        missing = sorted(set(wanted) - {tag.name for tag in tags}) if wanted else []
        if not tags or missing:
            scope = _describe_scope(data, instance)
            detail = f" (not found: {', '.join(missing)})" if missing and tags else ""
            raise ImageNotFound(
                f"No image matches {scope} in instance {instance.name}{detail}; nothing "
                "was signed.",
            )
        _require_sign(request, tags)
        manifests = list({tag.manifest_id: tag.manifest for tag in tags}.values())
        return _sign_manifests(manifests, request)


class SignTagView(APIView):
    """``POST /api/v1/registry/tags/<id>/sign/``: the tag list's Sign button."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "sign"
    action_permissions = {"sign": SIGN}
    throttle_scope = "sign"

    @extend_schema(
        request=None,
        responses=s.SignResultSerializer,
        parameters=[
            OpenApiParameter(
                "tag_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The tag's id."
            )
        ],
    )
    def post(self, request: Request, tag_id: int) -> Response:
        tag = (
            scope_model(Tag.objects.select_related("manifest__repository__namespace"), request.user)
            .filter(pk=tag_id)
            .first()
        )
        if tag is None:
            raise ImageNotFound(f"No tag with id {tag_id}.")
        _require_sign(request, [tag])
        return _sign_manifests([tag.manifest], request)


def _verifiable_instances(request: Request, image: str) -> Any:
    """The instances the user may verify in (None: all); an image of a namespace outside
    the user's scope answers ImageNotFound, like an unknown one."""
    user = request.user
    if is_unscoped(user):
        return None
    ref = verification.parse_image(image)
    namespace_name = ref.repository.split("/", 1)[0]
    hidden = Namespace.objects.filter(
        Q(instance__default_domain=ref.domain) | Q(instance__domains__name=ref.domain),
        name=namespace_name,
    ).exclude(pk__in=visible_namespaces(user, perm=VIEW_SIGNATURE).values("pk"))
    if hidden.exists():
        raise ImageNotFound(f"No registry instance answers to domain {ref.domain}.")
    return visible_instances(user, perm=VIEW_SIGNATURE)


class VerifyView(APIView):
    """``POST verify/ {"image": "<domain>/<ns>/<repo>:<tag>"}`` (or ``@sha256:<hex>``).

    Reads the ``.sig`` artifact from the registry and checks it against the namespace
    policy's key: 200 with ``verified`` and the reasons either way; 400 for a malformed
    image, 404 for an unknown domain or image, 409 when the namespace has no policy.
    """

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "verify"
    action_permissions = {"verify": VIEW_SIGNATURE}
    throttle_scope = "verify"

    @extend_schema(request=s.VerifySerializer, responses=s.VerificationResultSerializer)
    def post(self, request: Request) -> Response:
        data = _validated(s.VerifySerializer, request)
        result = verification.verify_image(
            image=data["image"], instances=_verifiable_instances(request, data["image"])
        )
        return Response(result.as_dict())


# --- namespaces with their policy ----------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _INSTANCE,
            _query(
                "kms_sign_policy",
                "true: namespaces with a policy; false: without.",
                OpenApiTypes.BOOL,
            ),
            _query(
                "enabled",
                "true: with an enabled policy; false: none or a disabled one.",
                OpenApiTypes.BOOL,
            ),
            _query("search", "Only namespaces whose name contains this text."),
        ]
    )
)
class NamespacePolicyViewSet(viewsets.ReadOnlyModelViewSet):
    """Namespaces with their signing policy (TCR DescribeNamespaces, filter KmsSignPolicy).

    Filters: ``instance`` (id or name), ``kms_sign_policy=true|false`` (has a policy),
    ``enabled=true|false`` (has an enabled policy / has none or a disabled one), ``search``.
    """

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    _view = ("registry.view_namespace", VIEW_POLICY)
    action_permissions = {"list": _view, "retrieve": _view, "metadata": _view}
    serializer_class = s.NamespacePolicyStatusSerializer

    def get_queryset(self) -> QuerySet[Namespace]:
        queryset = (
            Namespace.objects.select_related("instance")
            .prefetch_related(
                Prefetch(
                    "signing_policies",
                    queryset=SigningPolicy.objects.select_related("key").defer(
                        "key__sealed_private_key"
                    ),
                )
            )
            .order_by("instance__name", "name")
        )
        queryset = scope_model(queryset, self.request.user)
        where = _instance_filter(self.request, "instance")
        if where is not None:
            queryset = queryset.filter(where)
        has_policy = _bool_param(self.request, "kms_sign_policy")
        if has_policy is not None:
            queryset = queryset.filter(signing_policies__isnull=not has_policy)
        enabled = _bool_param(self.request, "enabled")
        if enabled is True:
            queryset = queryset.filter(signing_policies__disabled=False)
        elif enabled is False:
            queryset = queryset.exclude(signing_policies__disabled=False)
        search = self.request.query_params.get("search")
        if search:
            queryset = queryset.filter(name__icontains=search)
        return queryset
