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


def test_without_a_preferences_page_the_preferences_link_is_the_unsubscribe_link() -> None:
    # a confirmation email (signup) or a newsletter without a preferences endpoint: the footer's
    # "Change your topics" link must still lead somewhere, and no click token is made up
    sub = Subscriber(email="ada@example.com")
    values = personalize.recipient_values(sub, default_name="there", unsubscribe_url="https://x.example/cancel")
    assert values["preferences_url"] == values["unsubscribe_url"] == "https://x.example/cancel"
    assert values["click_token"] == ""
    assert values["first_name"] == values["name"] == "there" and values["preferences"] == "all topics"


# ----------------------------------------------------------- where a field lands (tag_html, fill)

T = personalize.token


def filled(compiled: str, **values: str) -> str:
    return personalize.fill(personalize.tag_html(compiled), values)


def test_a_field_right_after_or_before_a_tag_is_text() -> None:
    # what lxml writes for `<p>{{ recipient.name }}</p>`: nothing between the tags and the field
    assert filled(f"<p>{T('name')}</p>", name="<b>&") == "<p>&lt;b&gt;&amp;</p>"
    assert filled(f"{T('name')}<br>{T('name')}", name="A&B") == "A&amp;B<br>A&amp;B"
    assert filled(f'<a href="{T("email")}"></a>{T("name")}', email="a b", name="a b") == '<a href="a%20b"></a>a b'


def test_a_field_inside_a_tag_but_outside_any_value_is_refused_with_the_tag_quoted() -> None:
    """The author is told which tag holds the stray field (the whole tag, up to its `>`), in one
    short line: a long tag is quoted up to 200 characters."""
    from digest.errors import TemplateError

    stray = f'<a href="https://x.example/" {T("first_name")}>'
    with pytest.raises(TemplateError) as caught:
        personalize.tag_html(f"<p>Hi</p>{stray}there</a>")
    assert str(caught.value) == f"a recipient field inside a tag but outside an attribute value: {stray}"
    long = f'<img alt="{"x" * 300}" {T("email")}>'
    with pytest.raises(TemplateError) as caught:
        personalize.tag_html(f"<p>{long}</p>")
    assert str(caught.value) == f"a recipient field inside a tag but outside an attribute value: {long[:200]}"


def test_a_field_lxml_lower_cased_as_a_name_is_refused_with_its_tag() -> None:
    """What lxml makes of a field written as an attribute's or an element's name: the token in lower
    case, which no filling matches. Refused with the tag quoted and the field spelt as the author
    wrote it; a field in any value or text passes."""
    from digest.errors import TemplateError

    lowered = T("first_name").lower()
    for html, tag in [
        (
            f'<p>x</p><a href="https://x.example/" {lowered}="">y</a>',
            '<a href="https://x.example/" {{ recipient.first_name }}="">',
        ),
        (f"<div><{lowered}>y</{lowered}></div>", "<{{ recipient.first_name }}>"),
        (
            f'<img alt="{"x" * 300}" {lowered}>',
            f'<img alt="{"x" * 300}" {lowered}>'[:200].replace(lowered, "{{ recipient.first_name }}"),
        ),
    ]:
        with pytest.raises(TemplateError) as caught:
            personalize.refuse_field_names(html)
        assert str(caught.value) == f"a recipient field used as a name, not a value: {tag}"
    fine = f'<a href="{T("email")}" title="{T("name")}">{T("first_name")}</a><!-- {T("name")} -->'
    personalize.refuse_field_names(fine)
    personalize.refuse_field_names(fine.lower().replace(personalize.NONCE, "0" * 24))  # another process's
