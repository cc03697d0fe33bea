"""config.filters: a malformed query parameter answers the project's 400, naming it."""

from __future__ import annotations

import pytest

from config.errors import ValidationFailed
from config.filters import ChoiceParamFilter, FilterSet, IdFilter, StrictBooleanFilter
from registry.models import Namespace

pytestmark = pytest.mark.django_db


class _Filters(FilterSet):
    instance = IdFilter("instance_id", help_text="An instance id.")
    colour = ChoiceParamFilter("name", choices=["red", "blue"], help_text="A colour.")
    flag = StrictBooleanFilter(method="filter_flag", help_text="A flag.")

    def filter_flag(self, queryset, name, value):
        return queryset.filter(name="team-a") if value else queryset.exclude(name="team-a")


def _error(data: dict[str, str]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as raised:
        _Filters(data, queryset=Namespace.objects.all()).filtered()
    return raised.value


def test_the_first_malformed_parameter_in_declaration_order_is_named():
    error = _error({"flag": "maybe", "colour": "green", "instance": "x"})
    assert error.as_dict() == {
        "code": "InvalidParameterValue",
        "message": "Invalid instance: expected a numeric id, got 'x'.",
        "fields": {"instance": ["Expected a numeric id."]},
    }


def test_a_value_is_echoed_cut_short_and_never_read_as_a_template():
    error = _error({"colour": "{name}" + "x" * 60})
    echoed = "{name}" + "x" * 34
    assert error.message == f"Invalid colour: {echoed!r} is not one of red, blue."
    assert error.fields == {"colour": ["Expected one of red, blue."]}


@pytest.mark.parametrize(
    ("value", "names"),
    [("", ["team-a", "team-b"]), ("TRUE", ["team-a"]), ("1", ["team-a"]), ("False", ["team-b"])],
)
def test_booleans_are_strict_and_an_empty_value_filters_nothing(value, names):
    from registry import services

    instance, _ = services.create_instance(
        name="prod", backend_url="http://127.0.0.1:1", default_domain="prod.signet.test"
    )
    Namespace.objects.create(instance=instance, name="team-a")
    Namespace.objects.create(instance=instance, name="team-b")
    filtered = _Filters({"flag": value}, queryset=Namespace.objects.order_by("name")).filtered()
    assert [namespace.name for namespace in filtered] == names
    assert _error({"flag": "yes"}).fields == {"flag": ["Expected true or false."]}
