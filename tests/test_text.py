"""What a reader sees of an article's text: excerpts derived from a body, cut excerpts, one-line
fields, reading times and plain-text folding (digest/text.py)."""

from __future__ import annotations

import pytest

from digest.text import (
    BODY_HEAD_CHARS,
    TEXT_WIDTH,
    body_to_text,
    clean_excerpt,
    cut_words,
    one_line,
    reading_minutes,
    word_count,
    wrap,
)

# ---------------------------------------------------------------- excerpts derived from markdown


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("# A heading\nText", "A heading Text"),
        ("   ### Indented heading\nText", "Indented heading Text"),
        ("> a quote\n>no space", "a quote no space"),
        ("- one\n* two\n+ three", "one two three"),
        ("Above\n\n***\n\nBelow\n\n-----\n\nEnd", "Above Below End"),
        ("Above\n\n- - -\n\nBelow\n\n* * *\n\nMore\n\n___\n\nEnd", "Above Below More End"),
        ("**bold** and __strong__", "bold and strong"),
        ("*em* and _it_", "em and it"),
        ("run `make test` now", "run make test now"),
        ("See ![a chart](chart.png) here", "See here"),
        ("Read [the post](https://x.example/p) today", "Read the post today"),
        ("Read [the post][1] today", "Read the post today"),
        ("Before\n```python\nsecret()\n```\nAfter", "Before After"),
        ("Before\n~~~\nhidden()\n~~~\nAfter", "Before After"),
        ('import Chart from "./chart"\nexport const meta = 1\nText', "Text"),
    ],
    ids=[
        "heading",
        "indented-heading",
        "quote",
        "bullets",
        "rules",
        "spaced-and-underscore-rules",
        "strong",
        "emphasis",
        "code",
        "image",
        "link",
        "reference-link",
        "backtick-fence",
        "tilde-fence",
        "mdx-imports",
    ],
)
def test_a_markdown_body_shows_its_words_not_its_markup(markdown: str, shown: str) -> None:
    assert body_to_text(markdown) == shown


@pytest.mark.parametrize(
    "prose",
    [
        "We import coffee and export tea",  # the words, not MDX statements at a line's start
        "Important news: exports grew",
        "Issue #42 is fixed",  # a '#' inside a line is no heading
        "x > y holds",
        "2 * 3 = 6 and 4 * 5 = 20",
        "snake_case_names stay whole",
        "a - b - c",
        "costs $5 [estimate]",
    ],
)
def test_ordinary_prose_is_kept_as_written(prose: str) -> None:
    assert body_to_text(prose) == prose


def test_a_line_starting_with_a_word_like_import_is_prose() -> None:
    assert body_to_text("importance matters\nexporters too") == "importance matters exporters too"


def test_an_html_body_shows_its_text_without_scripts_styles_or_templates() -> None:
    html = (
        "<p>First</p><p>second &amp; third</p>"
        "<script>alert(1)</script><style>p{color:red}</style>"
        "<template>tpl</template><noscript>enable js</noscript>"
        "<div>last<br>line</div>"
    )
    assert body_to_text(html, is_html=True) == "First second & third last line"


def test_text_after_a_script_shows_and_nested_skips_end_where_they_close() -> None:
    html = "<noscript><style>a{}</style>still hidden</noscript>shown"
    assert body_to_text(html, is_html=True) == "shown"
    assert body_to_text("</script>shown", is_html=True) == "shown"  # a stray end tag hides nothing


def test_an_html_body_is_not_read_as_markdown() -> None:
    assert body_to_text("<p># not a heading *kept*</p>", is_html=True) == "# not a heading *kept*"


def test_only_the_start_of_a_body_is_read() -> None:
    body = "word " * 1000 + "TAIL"
    text = body_to_text(body)
    assert "TAIL" not in text and len(text) <= BODY_HEAD_CHARS
    assert body_to_text("abcdef", max_chars=3) == "abc"


# ---------------------------------------------------------------- one-line fields


def test_one_line_drops_control_characters_and_folds_whitespace() -> None:
    assert one_line("Subject\r\nBcc: x@example.com") == "Subject Bcc: x@example.com"  # no header injection
    assert one_line("a\x00b\x1b[31m c\x7f\x85d") == "ab[31m cd"
    assert one_line("  tabs\tand   runs  ") == "tabs and runs"
    assert one_line("Déjà vu — 東京") == "Déjà vu — 東京"  # printable text is kept as it is


# ---------------------------------------------------------------- cutting excerpts


def test_cut_words_keeps_text_that_fits_and_cuts_at_a_word_otherwise() -> None:
    assert cut_words("exactly ten", 11) == "exactly ten"  # fits exactly: no ellipsis
    assert cut_words("alpha beta gamma", 10) == "alpha beta…"  # the word ending at the limit stays
    assert cut_words("alpha beta, gamma", 11) == "alpha beta…"  # no dangling punctuation
    assert cut_words("alpha beta — gamma delta", 13) == "alpha beta…"
    assert cut_words("a " + "x" * 30, 10) == "a xxxxxxxx…"  # a word too long is cut, not the text dropped
    assert cut_words("one\ntwo three", 100) == "one two three"


def test_a_cut_excerpt_never_exceeds_the_limit_and_its_ellipsis() -> None:
    text = "The quick brown fox jumps over the lazy dog and keeps on running far away"
    for limit in range(5, len(text)):
        cut = cut_words(text, limit)
        assert cut.endswith("…") and len(cut) <= limit + 1
        assert text.startswith(cut[:-1])


def test_clean_excerpt_shows_an_importer_cut_as_one_ellipsis() -> None:
    assert clean_excerpt("Talks, collaborations, ex...", 100) == "Talks, collaborations…"
    assert clean_excerpt("Talks, collaborations, ex…", 100) == "Talks, collaborations…"
    assert clean_excerpt("A whole sentence. ... ", 100) == "A whole sentence.…"
    assert clean_excerpt("Single...", 100) == "Single…"  # one word: nothing to drop
    assert clean_excerpt("No cut here", 100) == "No cut here"
    assert clean_excerpt("Read the notes (all of them)...", 100) == "Read the notes (all of them)…"  # no fragment
    assert clean_excerpt("Finished it! ...", 100) == "Finished it!…"
    assert clean_excerpt("one two thr...", 8) == "one two…"  # exactly the limit: the cut still shows
    assert clean_excerpt("one two three four five...", 12) == "one two…"  # then cut to the limit


# ---------------------------------------------------------------- reading time and folding


def test_reading_time_rounds_to_whole_minutes_and_is_never_zero() -> None:
    assert reading_minutes(0) == 1 and reading_minutes(114) == 1
    assert reading_minutes(230) == 1 and reading_minutes(460) == 2 and reading_minutes(700) == 3
    for script in ("東京", "ひら", "カナ", "한국"):  # kanji, hiragana, katakana, hangul: ~500 a minute
        assert word_count(script * 250) == 231


def test_plain_text_is_folded_at_78_columns_and_short_lines_stay() -> None:
    line = "x" * TEXT_WIDTH
    assert wrap(line) == line and wrap(line + " y") == line + "\ny"
    assert wrap("a b", width=2) == "a\nb"
    table = "Name:\tvalue   with  spaces kept"  # a short line is kept byte for byte, tabs and runs too
    assert wrap(table) == table and wrap(f"  indented\n{table}") == f"  indented\n{table}"
    exact = "Total:\t" + "y" * (TEXT_WIDTH - 7)  # exactly 78 characters: short enough, kept as it is
    assert len(exact) == TEXT_WIDTH and wrap(exact) == exact
    compound = " ".join(["state-of-the-art"] * 6)  # never broken at a hyphen: a reader would see "state-of-"
    assert wrap(compound).splitlines() == [" ".join(["state-of-the-art"] * 4), " ".join(["state-of-the-art"] * 2)]
    lines = "\n".join(f"Line {i} of a list" for i in range(10))  # many short lines: each kept on its own
    assert wrap(lines) == lines
    assert wrap(12) == "12"


# ---------------------------------------------------------------- corners the first tests missed


def test_one_line_folds_a_double_space_and_trims_a_printable_field() -> None:
    assert one_line("Two  spaces inside") == "Two spaces inside"  # printable, yet not one line as is
    assert one_line(" Padded title ") == "Padded title"


def test_a_body_ending_in_an_ampersand_word_keeps_it() -> None:
    # HTMLParser holds back a trailing '&...' that could still become an entity until it is closed
    assert body_to_text("Tom & Jerry at AT&T") == "Tom & Jerry at AT&T"
    assert body_to_text("<p>Deals from AT&T", is_html=True) == "Deals from AT&T"


def test_a_word_is_cut_inside_only_when_whole_words_would_keep_half_the_room_or_less() -> None:
    assert cut_words("alphab " + "x" * 10, 10) == "alphab…"  # whole words keep 6 of 10: the word goes
    assert cut_words("alpha " + "x" * 10, 10) == "alpha xxxx…"  # only 5 of 10: the long word is cut
    assert cut_words("abcd " + "x" * 10, 10) == "abcd xxxxx…"


def test_a_word_ending_exactly_at_the_limit_is_kept_whole() -> None:
    assert cut_words("one two three four", 13) == "one two three…"
    assert cut_words("one two three four", 12) == "one two…"


def test_a_cut_never_eats_into_the_last_word_kept() -> None:
    assert cut_words("Pay TAX now, please", 8) == "Pay TAX…"
    assert clean_excerpt("Read about TAX, mo...", 100) == "Read about TAX…"


def test_an_importer_cut_just_over_the_limit_still_shows_it_was_cut() -> None:
    # the same rule as a cut of our own: up to the limit, then the ellipsis
    assert clean_excerpt("alpha beta gam...", 10) == "alpha beta…" == cut_words("alpha beta gamma", 10)
    assert clean_excerpt("one two thr...", 7) == "one two…"
    text = "The quick brown fox jumps over the lazy dog and keeps on run..."
    for limit in range(5, len(text) + 2):
        shown = clean_excerpt(text, limit)
        assert shown.endswith("…") and len(shown) <= limit + 1 and text.startswith(shown[:-1])


def test_words_are_counted_by_their_separators_and_ideographs_as_whole_words() -> None:
    assert word_count("") == 0 and word_count("one") == 1
    assert word_count("one two three") == 3 and word_count("one\ntwo") == 2
    assert word_count("東京") == 1  # two ideographs: less than one word's worth, no fraction


def test_reading_time_rounds_half_a_minute_up() -> None:
    assert reading_minutes(344) == 1 and reading_minutes(345) == 2  # 230 words a minute


def test_plain_text_lines_of_79_columns_are_folded() -> None:
    assert wrap("x" * 76 + " y") == "x" * 76 + " y"  # 78 characters: RFC 5322's limit, kept
    assert wrap("x" * 77 + " y") == "x" * 77 + "\ny"


def test_a_url_longer_than_a_line_gets_a_line_of_its_own_unbroken() -> None:
    url = "https://example.com/" + "a" * 100
    assert wrap(f"Read it at {url} today") == f"Read it at\n{url}\ntoday"


def test_lone_surrogates_in_decoded_json_are_replaced_and_their_fields_named() -> None:
    from digest.text import SURROGATE_ESCAPE, without_lone_surrogates

    doc = {
        "name": "Ada \ud800",
        "tags": ["ok", "x\udfff"],
        "emoji": "\U0001f600",  # a pair, decoded: not a surrogate any more
        "k\udc00": 1,
        "prefs": {"deep": {"er": {"still": "\udbff", "list": [["\ud800"]]}}},
        "n": 3,
    }
    cleaned, fields = without_lone_surrogates(doc, depth=3)
    assert cleaned == {
        "name": "Ada \ufffd",
        "tags": ["ok", "x\ufffd"],
        "emoji": "\U0001f600",
        "k\ufffd": 1,
        "prefs": {"deep": {"er": {"still": "\ufffd", "list": [["\ud800"]]}}},  # past the depth: as it was
        "n": 3,
    }
    assert fields == ["name", "tags", "a field name", "prefs.deep.er.still"]
    assert without_lone_surrogates("plain") == ("plain", [])
    assert without_lone_surrogates(["\ud800"], "list") == (["\ufffd"], ["list"])
    assert without_lone_surrogates({1: "\ud800"}) == ({1: "\ufffd"}, ["1"])
    # what a JSON text must contain for a decoded value to hold one: an escape from \ud800 to \udfff
    assert [bool(SURROGATE_ESCAPE.search(t)) for t in ('"\\ud800"', '"\\uDFFF"', '"\\ud7ff"', '"\\ue000"')] == [
        True,
        True,
        False,
        False,
    ]
