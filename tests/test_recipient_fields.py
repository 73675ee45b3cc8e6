"""What a template reaches through `recipient.attributes` (digest/personalize.py): the list's extra
columns by name, in the direct compile (values) and the fast path (tokens filled in) alike."""

from __future__ import annotations

import jinja2
import pytest

from digest import personalize
from digest.models import Subscriber

#: As digest's composer sets Jinja up: an unknown name is an error, never a silent blank.
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True)


def values_for(attributes: dict[str, str]) -> dict[str, str]:
    sub = Subscriber(email="ada@example.com", attributes=attributes)
    return personalize.recipient_values(sub, default_name="there", unsubscribe_url="https://x.example/u")


def direct(template: str, values: dict[str, str]) -> str:
    return ENV.from_string(template).render(recipient=personalize.values_view(values))


def fast(template: str, values: dict[str, str]) -> str:
    compiled = personalize.tag_html(ENV.from_string(template).render(recipient=personalize.TOKENS))
    return personalize.fill(compiled, values)


@pytest.mark.parametrize("compile_", [direct, fast], ids=["direct", "fast-path"])
def test_a_column_is_reached_by_its_name_in_any_spelling(compile_) -> None:
    values = values_for({"Plan Type": "Pro", " Company: ": "Acme"})  # a header as a spreadsheet left it
    template = '<p>{{ recipient.attributes.plan_type }} {{ recipient.attributes["Plan Type"] }}</p>'
    assert compile_(template, values) == "<p>Pro Pro</p>"
    assert compile_("<p>{{ recipient.attributes.company }}</p>", values) == "<p>Acme</p>"


@pytest.mark.parametrize("compile_", [direct, fast], ids=["direct", "fast-path"])
def test_a_column_the_subscriber_has_no_value_in_prints_nothing(compile_) -> None:
    # one subscriber's row may leave a column empty: the email shows nothing there, never "None"
    values = values_for({"plan": "Pro"})
    assert compile_("<p>[{{ recipient.attributes.company }}]</p>", values) == "<p>[]</p>"
    in_attributes = '<a title="at {{ recipient.attributes.company }}" href="{{ recipient.attributes.site }}">x</a>'
    assert compile_(in_attributes, values) == '<a title="at " href="">x</a>'


def test_a_name_starting_with_an_underscore_is_no_column() -> None:
    # `_plan` is not the column `plan`: Python's own names stay out of reach, and the author is told
    values = values_for({"plan": "Pro"})
    with pytest.raises(jinja2.UndefinedError, match="_plan"):
        direct("{{ recipient.attributes._plan }}", values)
