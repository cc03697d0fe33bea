"""The registry API lists' query parameters (``config.filters``): ids (``?instance=3``)
and, where useful, a text search (``?search=``)."""

from __future__ import annotations

from config.filters import FilterSet, IdFilter, TextFilter


def _search() -> TextFilter:
    return TextFilter("name", "icontains", help_text="Only those whose name contains this text.")


def _id(name: str, field_name: str) -> IdFilter:
    return IdFilter(field_name, help_text=f"Only those of this {name} (its numeric id).")


class InstanceFilterSet(FilterSet):
    search = _search()
    region = TextFilter("region", help_text="Only instances of this region.")


class NamespaceFilterSet(FilterSet):
    instance = _id("instance", "instance_id")
    search = _search()


class RepositoryFilterSet(FilterSet):
    instance = _id("instance", "namespace__instance_id")
    namespace = _id("namespace", "namespace_id")
    search = _search()


class TagFilterSet(FilterSet):
    instance = _id("instance", "repository__namespace__instance_id")
    namespace = _id("namespace", "repository__namespace_id")
    repository = _id("repository", "repository_id")
    name = TextFilter("name", help_text="Only tags with exactly this name.")
    search = _search()
    repository_name = TextFilter(
        "repository__name", help_text="Only tags of this repository (its full name)."
    )
    digest = TextFilter("manifest__digest", help_text="Only tags pointing at this manifest digest.")


class ManifestFilterSet(FilterSet):
    instance = _id("instance", "repository__namespace__instance_id")
    namespace = _id("namespace", "repository__namespace_id")
    repository = _id("repository", "repository_id")
    digest = TextFilter("digest", help_text="Only the manifest with this digest.")
    media_type = TextFilter("media_type", help_text="Only manifests of this media type.")
