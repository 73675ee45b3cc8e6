"""How one email is laid out (digest/layout.py): which emails may share a compile, the headings a
grouped edition can have, and the pieces a compiled edition is cut into."""

from __future__ import annotations

import pytest
from factories import article

from digest.errors import TemplateError
from digest.layout import (
    ARTICLE_MARKER,
    CONTENTS_MARKER,
    END_MARKER,
    GROUP_MARKER,
    ITEM_MARKER,
    ITEMS_END_MARKER,
    NUMBER_TOKEN,
    Layout,
    Pieces,
    group_labels,
    numbered,
)

A, B, C = article("a"), article("b"), article("c")


def test_emails_share_a_layout_key_only_when_they_show_the_same_stories_the_same_way() -> None:
    ungrouped = Layout((("", (A, B, C)),), contents=False)
    assert ungrouped.articles == (A, B, C) and ungrouped.key == ("a", "b", "c")
    assert Layout((("", (B, A, C)),), contents=False).key != ungrouped.key  # another order
    grouped = Layout((("AI", (A, B)), ("Web", (C,))), contents=False)
    regrouped = Layout((("AI", (A,)), ("Web", (B, C))), contents=False)
    assert grouped.articles == regrouped.articles == (A, B, C)
    assert grouped.key != regrouped.key  # the same stories under other headings: another email
    assert grouped.key == Layout((("AI", (A, B)), ("Web", (C,))), contents=False).key
    assert grouped.key != ungrouped.key


def test_a_story_whose_id_is_a_topic_name_does_not_make_two_emails_share_a_key() -> None:
    web = article("Web")
    one = Layout((("AI", (A,)), ("Web", (B, C))), contents=False)
    other = Layout((("AI", (A, web)), ("b", (C,))), contents=False)
    assert one.key != other.key


def test_group_headings_are_each_tag_and_category_once_in_pool_order() -> None:
    pool = [
        article("x", tags=("AI", "Robots"), categories=("News",)),
        article("y", tags=("Robots",), categories=("AI", "Essays")),
    ]
    assert group_labels(pool) == ("AI", "Robots", "News", "Essays")
    assert group_labels([]) == ()


def test_a_story_number_is_filled_into_every_place_its_piece_prints_it() -> None:
    piece = f"<b>{NUMBER_TOKEN}.</b> title <a href='#s{NUMBER_TOKEN}'>"
    assert numbered(piece, 12) == "<b>12.</b> title <a href='#s12'>"


def compiled(n_articles: int, n_groups: int, contents: bool) -> str:
    parts = ["<head>"]
    if contents:
        parts += [CONTENTS_MARKER, "<ol>"]
        parts += [f"{ITEM_MARKER}<li>item {i}</li>" for i in range(n_articles)]
        parts += [ITEMS_END_MARKER, "</ol>"]
    parts += [f"{GROUP_MARKER}<h2>group {i}</h2>" for i in range(n_groups)]
    parts += [f"{ARTICLE_MARKER}<p>article {i}</p>" for i in range(n_articles)]
    parts += [END_MARKER, "<tail>"]
    return "".join(parts)


def test_a_compiled_edition_is_cut_into_its_pieces() -> None:
    pieces = Pieces.cut(compiled(2, 1, contents=True), 2, 1, "digest.mjml.j2")
    assert pieces.head == "<head>"
    assert pieces.contents == ("<ol>", "</ol>")
    assert pieces.items == ("<li>item 0</li>", "<li>item 1</li>")
    assert pieces.groups == ("<h2>group 0</h2>",)
    assert pieces.articles == ("<p>article 0</p>", "<p>article 1</p>")
    assert pieces.tail == "<tail>"
    plain = Pieces.cut(compiled(1, 0, contents=False), 1, 0, "digest.mjml.j2")
    assert (plain.contents, plain.items, plain.groups, plain.articles) == ((), (), (), ("<p>article 0</p>",))


MESSAGE = (
    "my.mjml.j2: put {{ article_start }} before each article block and {{ articles_end }} after the loop, "
    "{{ group_start }} before each group heading, and (for a contents list) {{ contents_start }} before "
    "its section, {{ contents_item }} before each line and {{ contents_end }} after the last (needed to "
    "compile each piece once)"
)


@pytest.mark.parametrize(
    ("html", "n_articles", "n_groups"),
    [
        ("<p>no markers</p>", 1, 0),  # a theme without the markers
        (compiled(2, 0, contents=False), 3, 0),  # a story block printed outside the marker
        (compiled(2, 1, contents=False), 2, 0),  # a heading nobody asked for
        (compiled(2, 0, contents=True).replace(ITEMS_END_MARKER, ""), 2, 0),  # contents not closed
        (compiled(2, 0, contents=False).replace(END_MARKER, ""), 2, 0),  # no articles_end
    ],
    ids=["no-markers", "article-count", "group-count", "contents-unclosed", "no-end"],
)
def test_a_template_without_its_markers_stops_with_a_message_saying_where_to_put_them(
    html: str, n_articles: int, n_groups: int
) -> None:
    with pytest.raises(TemplateError) as caught:
        Pieces.cut(html, n_articles, n_groups, "my.mjml.j2")
    assert str(caught.value) == MESSAGE
