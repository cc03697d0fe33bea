"""Listings: ``GET /v2/``, ``/v2/_catalog`` and ``/v2/<name>/tags/list``, following
``Link: <...>; rel="next"`` pagination (on the registry's own origin only)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

from registry.client.auth import CATALOG_ACCESS, Access, repo_access
from registry.client.errors import registry_error_body
from registry.client.transport import Transport
from registry.errors import InvalidReference, RegistryError
from registry.reference import validate_repository_name

MAX_PAGES = 10_000


class CatalogOperations(Transport):
    def ping(self) -> None:
        """``GET /v2/``: raises unless the registry answers 200 (after authentication)."""
        self._request("GET", "/v2/", operation="GET /v2/", access={})

    def catalog(self, *, page_size: int = 100) -> Iterator[str]:
        """Every repository name, following ``Link: <...>; rel="next"`` pagination."""
        self._check_page_size(page_size)
        return self._paginate(
            f"/v2/_catalog?{urlencode({'n': page_size})}",
            operation="GET catalog",
            access=CATALOG_ACCESS,
            key="repositories",
        )

    def list_tags(self, repository: str, *, page_size: int = 100) -> Iterator[str]:
        """Every tag of ``repository``, following ``Link`` pagination.

        Yields nothing for a repository without tags. Distribution answers ``tags: null``
        once every tag is deleted, and 404 ``NAME_UNKNOWN`` for a repository that only
        holds untagged manifests (indistinguishable from an unknown one), so both are empty.
        """
        validate_repository_name(repository)
        self._check_page_size(page_size)
        return self._paginate(
            f"/v2/{repository}/tags/list?{urlencode({'n': page_size})}",
            operation=f"GET tags {repository}",
            access=repo_access(repository, "pull"),
            key="tags",
            missing_is_empty=True,
        )

    @staticmethod
    def _check_page_size(page_size: int) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            raise InvalidReference(
                f"page_size must be a positive integer, got {page_size!r}",
                field="page_size",
                value=str(page_size),
            )

    def _paginate(
        self,
        first: str,
        *,
        operation: str,
        access: Access,
        key: str,
        missing_is_empty: bool = False,
    ) -> Iterator[str]:
        url: str | None = self._url(first)
        seen: set[str] = set()
        while url and len(seen) < MAX_PAGES:
            seen.add(url)
            response = self._request(
                "GET", url, operation=operation, access=access, allow_404=missing_is_empty
            )
            if response.status_code == 404:
                code, _ = registry_error_body(response)
                if code == "NAME_UNKNOWN":
                    return
                self._raise_for_status(response, operation)
            try:
                items = response.json().get(key) or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError(
                    f"registry {self.name}: {operation} failed: the answer is not the "
                    "expected JSON",
                    registry=self.name,
                    operation=operation,
                    status=response.status_code,
                ) from exc
            yield from (str(item) for item in items)
            link = response.links.get("next", {}).get("url")
            url = self._same_origin(urljoin(response.url, link), operation) if link else None
            if url in seen:
                url = None
