"""Test images: the same builders ``make run`` uses for its demo push."""

from registry.sample_images import (  # noqa: F401
    BuiltImage,
    build_image,
    canonical_json,
    push_built_image,
    push_image,
    push_index,
)
