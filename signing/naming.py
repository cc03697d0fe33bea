"""The signing-policy name rule, with a message saying which part failed."""

from __future__ import annotations

import itertools
import re

from django.core.exceptions import ValidationError

MIN_LENGTH = 2
MAX_LENGTH = 50
SEPARATORS = "._-/"
_ALLOWED = re.compile(r"^[a-z0-9._\-/]*$")


def policy_name_problem(name: str) -> str | None:
    """Return why ``name`` breaks the rule, or None when it is valid."""
    if not MIN_LENGTH <= len(name) <= MAX_LENGTH:
        return (
            f"Policy name must be {MIN_LENGTH} to {MAX_LENGTH} characters long (it is {len(name)})."
        )
    bad = sorted({char for char in name if not _ALLOWED.match(char)})
    if bad:
        shown = " ".join(repr(char) for char in bad)
        return (
            "Policy name may contain only lowercase letters, digits and the separators "
            f". _ - / (found {shown})."
        )
    if name[0] in SEPARATORS:
        return f"Policy name must not start with a separator ({name[0]!r})."
    if name[-1] in SEPARATORS:
        return f"Policy name must not end with a separator ({name[-1]!r})."
    for first, second in itertools.pairwise(name):
        if first in SEPARATORS and second in SEPARATORS:
            return f"Policy name must not contain consecutive separators ({first + second!r})."
    return None


def validate_policy_name(name: str) -> None:
    problem = policy_name_problem(name)
    if problem:
        raise ValidationError(problem, code="invalid_policy_name")
