"""Per-recipient values with arbitrary text, in every position a template can print them.

Two independent checks of one property (issue 20): whatever a subscriber's name, attributes or
links hold (quotes, `&`, `<`, `>`, newlines, non-ASCII), filling the compiled pieces writes exactly
what a direct compile writes, byte for byte, and an HTML parser sees no element or attribute that a
plain value would not have given, with every value read back intact.

- unit: `personalize.tag_html` + `fill` against lxml's own serialiser (what premailer runs), over
  text, plain attributes, URL attributes (alone, inside a URL, two fields in one attribute);
- end to end: the sample's templates and a variant printing fields in every position (text, title,
  data-*, alt, href, src, <a name>, mj-button, mj-image, subject, preheader, text part), compiled
  by real jinja2, mjml-python and premailer, assembled (fast path) and compiled whole (direct).
"""

from __future__ import annotations

import shutil
from html.parser import HTMLParser

import lxml.html
import pytest
from conftest import ROOT, SAMPLE_AT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from digest import personalize
from digest.config import load_config
from digest.models import Choice, Selection, Subscriber
from digest.pipeline import open_run
from digest.text import one_line

#: The corners: both quotes, entity-looking text, markup, whitespace of every kind, non-ASCII,
#: percent signs (a URL attribute must not encode them twice), and attribute breakouts.
CORNERS = [
    '"',
    "'",
    "&",
    "<",
    ">",
    "\n",
    "\r\n",
    "\t",
    " ",
    "=",
    "%",
    "%20",
    "&amp;",
    "&quot;",
    "&#34;",
    "é",
    "李",
    "🚀",
    "\u00a0",
    "\u2028",
    '"onmouseover="alert(1)',
    "'><script>alert(1)</script>",
    "<!--",
    "-->",
    "]]>",
    "javascript:",
    "https://x.example/?a=1&b=2",
]
hostile = st.lists(st.one_of(st.sampled_from(CORNERS), st.text(max_size=4)), max_size=8).map("".join)

# ---------------------------------------------------------------------------------------- unit

T = personalize.token


def _piece(name: str, company: str, url: str) -> etree._Element:
    """A small document holding `name`, `company` and `url` in each kind of position."""
    root = lxml.html.fromstring("<div><p></p><span></span><a></a><a></a><img><form></form><a></a></div>")
    p, span, a_url, a_query, img, form, a_name = root
    p.text = f"Hi {name}, from {company}"
    span.set("title", name)
    span.set("data-both", f"{name} at {company}")
    a_url.set("href", url)
    a_query.set("href", f"https://example.com/p?who={name}&c={company}")
    img.set("src", url)
    img.set("alt", name)
    form.set("action", url)
    a_name.set("name", name)
    return root


def _html(root: etree._Element) -> str:
    return etree.tostring(root, method="html", encoding="unicode")


FIELDS = {"first_name": "name", "attr_company": "company", "unsubscribe_url": "url"}


@settings(max_examples=400, deadline=None)
@given(name=hostile, company=hostile, url=hostile)
@example(name='Say "hi"', company="O'Brien", url='https://u.example/?a=1&t=x"onmouseover="alert(1)')
@example(name="both ' and \"", company="&amp; <b>", url="https://u.example/caf\u00e9 \u674e?q=%20")
def test_filling_writes_what_lxml_writes_for_the_value(name: str, company: str, url: str) -> None:
    raw = {"first_name": name, "attr_company": company, "unsubscribe_url": url}
    values = {k: one_line(v) for k, v in raw.items()}  # as recipient_values gives them
    compiled = _html(_piece(T("first_name"), T("attr_company"), T("unsubscribe_url")))
    filled = personalize.fill(personalize.tag_html(compiled), values)
    direct = _html(_piece(values["first_name"], values["attr_company"], values["unsubscribe_url"]))
    assert filled == direct
    # and the SendGrid path (substitutions replaced literally, as SendGrid does) writes the same
    tagged = personalize.tag_html(compiled)
    substituted = tagged
    for token, replacement in personalize.substitutions(personalize.tokens_in((tagged,)), values).items():
        substituted = substituted.replace(token, replacement)
    assert substituted == direct
    # a parser sees the same elements and attributes as for a plain value, and each value intact
    plain = _html(_piece("x", "x", "x"))
    assert structure(filled) == structure(plain)
    attrs = [a for _, a in start_tags(filled)]
    name, company, url = values["first_name"], values["attr_company"], values["unsubscribe_url"]
    assert read_back(attrs[2]["title"], name)
    assert read_back(attrs[2]["data-both"], f"{name} at {company}")
    assert read_back(attrs[3]["href"], personalize.escape_url(url))
    assert read_back(attrs[5]["alt"], name)
    assert text_of(filled) == f"Hi {values['first_name']}, from {values['attr_company']}"


@pytest.mark.parametrize("corner", CORNERS, ids=[f"corner{i}" for i in range(len(CORNERS))])
def test_each_corner_alone_is_filled_as_lxml_writes_it(corner: str) -> None:
    """The property above, without the search: each corner on its own, and around plain text,
    in every position (text, attributes, a URL alone and inside a query, <a name>, form action)."""
    # libxml2 copies a server-side include and an HTML 4 `&{...}` into an attribute as they are
    both_quotes = f"'{corner}\""  # libxml2 keeps double quotes around it and writes &quot;
    for value in (corner, f"a{corner}b", f"{corner} {corner}", f"<!--{corner}-->", f"&{{{corner}}}", both_quotes):
        values = {k: one_line(value) for k in FIELDS}
        compiled = _html(_piece(T("first_name"), T("attr_company"), T("unsubscribe_url")))
        direct = _html(_piece(values["first_name"], values["attr_company"], values["unsubscribe_url"]))
        assert personalize.fill(personalize.tag_html(compiled), values) == direct


def test_printable_ascii_at_either_end_stays_as_it_is_in_a_url_that_needs_encoding() -> None:
    """'!' and '~' are the first and last characters libxml2 keeps in a URL; a space or non-ASCII
    character elsewhere in the URL must not change that."""
    for url in ("https://x.example/~ada/caf\u00e9", "https://x.example/wow!/a b", "!~ \u674e~!"):
        values = {k: one_line(url) for k in FIELDS}
        compiled = _html(_piece(T("first_name"), T("attr_company"), T("unsubscribe_url")))
        direct = _html(_piece(values["first_name"], values["attr_company"], values["unsubscribe_url"]))
        assert personalize.fill(personalize.tag_html(compiled), values) == direct
        assert "~" in direct or "!" in direct


def test_a_value_with_double_quotes_is_written_as_lxml_writes_it() -> None:
    """The case that used to differ: lxml single-quotes such a value, the fast path wrote &quot;."""
    compiled = '<a href="__T__" title="x __T__">u</a>'.replace("__T__", T("unsubscribe_url"))
    filled = personalize.fill(personalize.tag_html(compiled), {"unsubscribe_url": 'a"b'})
    assert filled == """<a href='a"b' title='x a"b'>u</a>"""
    both = personalize.fill(personalize.tag_html(compiled), {"unsubscribe_url": "a\"b'c"})
    assert both == '<a href="a&quot;b\'c" title="x a&quot;b\'c">u</a>'
    spaced = personalize.fill(personalize.tag_html(compiled), {"unsubscribe_url": "caf\u00e9 x"})
    assert spaced == '<a href="caf%C3%A9%20x" title="x caf\u00e9 x">u</a>'


def test_a_field_in_a_comment_is_escaped_as_jinja_wrote_it() -> None:
    """Outlook's conditional comments are markup to Outlook: lxml keeps a comment verbatim, so the
    value stays as Jinja's autoescape wrote it, and no quote can end the attribute inside."""
    compiled = f'<!--[if mso]><a href="{T("email")}">{T("name")}</a><![endif]--><p>{T("name")}</p>'
    values = {"email": "x\"onclick='y'", "name": "<b>&"}
    assert personalize.fill(personalize.tag_html(compiled), values) == (
        '<!--[if mso]><a href="x&#34;onclick=&#39;y&#39;">&lt;b&gt;&amp;</a><![endif]--><p>&lt;b&gt;&amp;</p>'
    )


def test_a_field_inside_a_tag_but_outside_any_attribute_value_is_a_template_error() -> None:
    from digest.errors import TemplateError

    with pytest.raises(TemplateError, match="outside an attribute value"):
        personalize.tag_html(f"<a {T('first_name')}>x</a>")


# ------------------------------------------------------------------------------ HTML structure


class _Parser(HTMLParser):
    """Python's own HTML parser (not lxml): what a mail client's parser would make of the markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[str, str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag, {}))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", "", {}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Parser:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser


def structure(html: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Elements, end tags, comments and attribute names, in document order (values left out)."""
    return [(kind, tag, tuple(sorted(attrs))) for kind, tag, attrs in _parse(html).events]


def start_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    return [(tag, attrs) for kind, tag, attrs in _parse(html).events if kind == "start"]


def text_of(html: str) -> str:
    return "".join(_parse(html).text)


def read_back(parsed: str | None, value: str) -> bool:
    """A parser reads the attribute's value back as it was. libxml2 copies a server-side include
    (`<!--...-->`) and an HTML 4 `&{...}` into an attribute unescaped (direct compiles too), so
    entities inside those read back decoded: such values are only held to the structure check."""
    return parsed == value or ("<!--" in value or "&{" in value)


# ---------------------------------------------------------------------------------- end to end

#: Every position a template can print a recipient field in, added to the sample's footer.
POSITIONS = """
    <mj-section><mj-column>
      <mj-text>
        <span id="pos-text" title="{{ recipient.name }}" data-company="{{ recipient.attributes.company }}">{{ recipient.name }}</span>
        <a id="pos-url" href="{{ recipient.unsubscribe_url }}">u</a>
        <a id="pos-query" href="https://example.com/p?who={{ recipient.name }}&amp;c={{ recipient.attributes.company }}">q</a>
        <img id="pos-src" src="{{ recipient.preferences_url }}" alt="{{ recipient.first_name }}">
        <a id="pos-name" name="{{ recipient.first_name }}">n</a>
      </mj-text>
      <mj-button href="{{ recipient.preferences_url }}">Prefs of {{ recipient.first_name }}</mj-button>
      <mj-image src="https://example.com/i.png?n={{ recipient.name }}" alt="{{ recipient.name }}" href="{{ recipient.unsubscribe_url }}" />
    </mj-column></mj-section>
    <mj-raw><!--[if mso]><a href="{{ recipient.unsubscribe_url }}">{{ recipient.name }}</a><![endif]--></mj-raw>
"""


@pytest.fixture(scope="module", params=["sample", "every-position"])
def run(request, tmp_path_factory):
    dest = tmp_path_factory.mktemp("escaping")
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copy(ROOT / "digest.toml", dest / "digest.toml")
    if request.param == "every-position":
        footer = dest / "templates" / "partials" / "footer.mjml.j2"
        footer.write_text(POSITIONS + footer.read_text(encoding="utf-8"), encoding="utf-8")
        for name, line in (
            ("subject.j2", "{{ recipient.first_name }}: "),
            ("preheader.j2", "For {{ recipient.name }}. "),
        ):
            path = dest / "templates" / name
            path.write_text(line + path.read_text(encoding="utf-8"), encoding="utf-8")
    run = open_run(load_config(dest / "digest.toml"), SAMPLE_AT)
    assert run.prepared.fast
    return run


def _values(run, name: str, company: str, unsubscribe_url: str, preferences_url: str) -> tuple[Subscriber, dict]:
    sub = Subscriber(email="o'brien+x@example.org", name=name, tags=(company,), attributes={"company": company})
    values = personalize.recipient_values(
        sub,
        default_name=run.config.newsletter.default_name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
    )
    return sub, values


picks = st.lists(st.integers(0, 1000), min_size=1, max_size=4)
#: The reference compile's MJML (mrml) writes attribute values through Rust's escape_debug: marks,
#: format, private-use and unassigned characters become `\u{200d}`, a backslash becomes two. The
#: fast path, which is what is sent, writes them as they are (checked on its own below), so they
#: are left out of the byte-for-byte comparison.
MRML_ESCAPES = ("Mn", "Me", "Mc", "Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs")
reference_safe = st.lists(
    st.one_of(
        st.sampled_from([c for c in CORNERS if c not in ("\u00a0", "\u2028")]),
        st.text(st.characters(blacklist_categories=MRML_ESCAPES, blacklist_characters="\\"), max_size=4),
    ),
    max_size=8,
).map("".join)
#: A link is never empty (without an endpoint it is a mailto): anything, at the start or inside a URL.
links = st.one_of(reference_safe.filter(one_line), reference_safe.map(lambda v: "https://u.example/p?x=" + v))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=picks, name=reference_safe, company=reference_safe, unsubscribe_url=links, preferences_url=links)
@example(
    picks=[0, 1],
    name='Say "hi"',
    company="A & B <b>",
    unsubscribe_url='https://x/u?list=weekly&token=x"onmouseover="alert(1)',
    preferences_url="https://x/p?t=caf\u00e9 \u674e'",
)
def test_assembled_equals_direct_and_no_value_adds_markup(
    run, picks, name, company, unsubscribe_url, preferences_url
) -> None:
    chosen = list({run.pool[i % len(run.pool)].id: run.pool[i % len(run.pool)] for i in picks}.values())
    sub, values = _values(run, name, company, unsubscribe_url, preferences_url)
    selection = Selection(sub, tuple(Choice(a, "x") for a in chosen), SAMPLE_AT, SAMPLE_AT)
    fast = run.prepared.email(selection, values)
    assert run.prepared.fast, run.prepared.fast_path_off  # assembled, not compiled whole
    direct = run.composer.compose_direct(selection, run.edition, values)
    assert (fast.html, fast.text, fast.subject, fast.preheader) == (
        direct.html,
        direct.text,
        direct.subject,
        direct.preheader,
    )
    _, plain_values = _values(run, "x", "x", "x", "x")
    plain = run.prepared.email(Selection(sub, selection.choices, SAMPLE_AT, SAMPLE_AT), plain_values)
    assert structure(fast.html) == structure(plain.html), "a value added or removed an element or attribute"
    by_id = {attrs["id"]: attrs for _, attrs in start_tags(fast.html) if attrs.get("id")}
    text = " ".join(text_of(fast.html).split())
    assert f"Hi {values['first_name']}," in text
    assert " ".join(values["email"].split()) in text
    if "pos-text" in by_id:
        assert read_back(by_id["pos-text"]["title"], values["name"])
        assert read_back(by_id["pos-text"]["data-company"], values["attr_company"])
        assert read_back(by_id["pos-url"]["href"], personalize.escape_url(values["unsubscribe_url"]))
        assert read_back(by_id["pos-src"]["src"], personalize.escape_url(values["preferences_url"]))
        assert read_back(by_id["pos-src"]["alt"], values["first_name"])
        assert " ".join(values["name"].split()) in text
        assert fast.subject.startswith(f"{values['first_name']}: ")
        assert fast.preheader.startswith(f"For {values['name']}.")


@pytest.mark.parametrize(
    "name",
    [
        "Ame\u0301lie",
        "\U0001f469\u200d\U0001f4bb Dev",
        "Rtl \u202eevil",
        "Soft\u00adhyphen",
        "Priv\ue000",
        "Zero\u200bwidth",
        "C:\\Users\\x",
    ],
)
def test_marks_and_format_characters_reach_attributes_and_text_intact(run, name: str) -> None:
    """Decomposed accents (as macOS types them), emoji joined by ZWJ, bidi, soft hyphens and
    backslashes: the email that is sent writes them as they are, in attributes and text alike."""
    sub, values = _values(run, name, name, "https://u.example/u", f"https://u.example/p?n={name}")
    selection = Selection(sub, (Choice(run.pool[0], "x"),), SAMPLE_AT, SAMPLE_AT)
    html = run.prepared.email(selection, values).html
    assert f"Hi {values['first_name']}," in " ".join(text_of(html).split())
    assert "\\u{" not in html and "\\\\" not in html
    by_id = {attrs["id"]: attrs for _, attrs in start_tags(html) if attrs.get("id")}
    if "pos-text" in by_id:
        assert by_id["pos-text"]["title"] == name and by_id["pos-src"]["alt"] == values["first_name"]
        assert by_id["pos-src"]["src"] == personalize.escape_url(values["preferences_url"])
        assert "%" in by_id["pos-src"]["src"] or name.isascii()
