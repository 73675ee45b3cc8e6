"""Composition: templates -> MJML -> HTML (+ text part, subject, preheader).

Two paths produce byte-identical HTML:

* `Composer.prepare(pool, edition)` compiles ONE document holding every candidate article, with a
  marker before each article block, and cuts it into a frame and per-article blocks. Each
  subscriber's email is then assembled from those pieces: MJML and premailer run once per edition,
  not once per subscriber (premailer alone costs ~18 ms an email).
* `Composer.compose_direct(selection, ...)` renders one subscriber's email from scratch. It is the
  reference the fast path is tested against, and the benchmark's naive baseline.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formataddr
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
import mjml
from markupsafe import Markup
from premailer import Premailer

from digest import personalize
from digest.clicks import ClickLinks
from digest.config import Config
from digest.errors import TemplateError
from digest.layout import (
    ARTICLE_MARKER,
    CONTENTS_MARKER,
    END_MARKER,
    GROUP_MARKER,
    ITEM_MARKER,
    ITEMS_END_MARKER,
    MARKERS,
    NUMBER_TOKEN,
    Layout,
    Pieces,
    group_labels,
    numbered,
)
from digest.links import web_version_url
from digest.models import Article, Edition, Email, Selection, Subscriber
from digest.selection import topic_groups
from digest.text import one_line, wrap
from digest.theme import Theme

MJML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
SUBJECT_TEMPLATE = "subject.j2"
PREHEADER_TEMPLATE = "preheader.j2"

#: Content-level: replaced once per distinct content. Nonce'd like the recipient tokens, so an
#: article's text can never stand in for it.
PREHEADER_TOKEN = personalize.content_token("preheader")


@dataclass(frozen=True)
class Content:
    """What every subscriber with the same articles receives, with per-recipient tokens unfilled."""

    key: tuple[str, ...]  #: the layout's key (articles, and groups when grouped)
    article_ids: tuple[str, ...]
    subject: str
    preheader: str
    html: str
    text: str

    @cached_property
    def tokens(self) -> tuple[tuple[str, str, str], ...]:
        """The per-recipient tokens left in subject, HTML and text: found once, filled per recipient."""
        return personalize.tokens_in((self.subject, self.html, self.text))


def _autoescape(name: str | None) -> bool:
    # select_autoescape() does not know .mjml names; all our markup templates must escape
    return (
        name is not None
        and not name.endswith((".txt.j2", ".txt"))
        and name
        not in (
            SUBJECT_TEMPLATE,
            PREHEADER_TEMPLATE,
        )
    )


def add_utm(url: str, params: Mapping[str, str]) -> str:
    if not params or not url.startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class Composer:
    """Renders digests with the templates of one config. Reuse one per run: it caches templates."""

    def __init__(self, config: Config, *, mjml_template: str = MJML_TEMPLATE, subject: str | None = None):
        """`mjml_template` and `subject` (a Jinja source standing in for subject.j2) are a segment's
        overrides: the same composer and both paths render them, so nothing else changes."""
        self.config = config
        self.mjml_template = mjml_template
        # the user's templates folder first, then the packaged theme (see theme.py)
        self.theme = Theme.of(config)
        loader = self.theme.loader()
        if subject is not None:
            loader = jinja2.ChoiceLoader([jinja2.DictLoader({SUBJECT_TEMPLATE: subject}), loader])
        self.env = jinja2.Environment(
            loader=loader,
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        self.env.filters["wrap"] = wrap
        self.env.globals["web_version"] = False  # the archive's composer renders its pages with True

    # --- template context ----------------------------------------------------------------------

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"{exc.name}: template not found in {self.theme.where()}") from None

    def _render(self, name: str, **context: Any) -> str:
        template = self._template(name)
        try:
            return template.render(**context)
        except jinja2.TemplateNotFound as exc:  # an {% include %} of a file no folder has
            raise TemplateError(f"{exc.name}: template not found in {self.theme.where()}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
        except (jinja2.UndefinedError, AttributeError, TypeError, ValueError) as exc:
            line = _template_line(exc, template)
            raise TemplateError(f"{template.filename or name}{f':{line}' if line else ''}: {exc}") from None

    def utm(self, edition: Edition) -> dict[str, str]:
        t = self.config.tracking
        if not t.utm:
            return {}
        return {
            "utm_source": t.utm_source,
            "utm_medium": t.utm_medium,
            "utm_campaign": t.utm_campaign.replace("{edition}", edition.id),
        }

    def article_view(
        self,
        article: Article,
        edition: Edition,
        number: int | str = 0,
        recipient: personalize.RecipientView | None = None,
    ) -> dict[str, Any]:
        local = article.date.astimezone(self.config.tz)
        return {
            "id": article.id,
            "number": number,
            "title": article.title,
            "link": self.clicks.link(edition.id, article.id, add_utm(article.url, self.utm(edition)), recipient),
            "url": article.url,
            "excerpt": article.excerpt,
            "author": article.author,
            "tags": list(article.tags),
            "categories": list(article.categories),
            "cover_url": article.cover_url,
            "cover_alt": article.cover_alt,
            "reading_minutes": article.reading_minutes,
            "date": local,
            "date_label": f"{local.day} {local:%b %Y}",
        }

    @cached_property
    def clicks(self) -> ClickLinks:
        return ClickLinks(self.config)

    @cached_property
    def newsletter_view(self) -> dict[str, Any]:
        n = self.config.newsletter
        return {
            "name": n.name,
            "site_url": n.site_url,
            "site_host": urlsplit(n.site_url).hostname or n.site_url,
            "postal_address": n.postal_address,
            "intro": n.intro,
            # a preferences page exists once `digest serve` has an endpoint to serve it from
            "preferences_page": bool(self.config.sending.unsubscribe_url or self.config.sending.preferences_url),
            "logo_url": n.logo_url,
            "logo_dark_url": n.logo_dark_url,
            "logo_alt": n.logo_alt or n.name,
            "language": n.language,
            "from_email": n.from_email,
        }

    def layout(self, selection: Selection) -> Layout:
        """Story order, groups and contents list for one selection ([templates] group_by, contents_min_articles)."""
        t = self.config.templates
        groups = topic_groups(selection) if t.group_by == "tag" else (("", selection.articles),)
        return Layout(groups, 0 < t.contents_min_articles <= len(selection.articles))

    def _context(
        self, layout: Layout, edition: Edition, recipient: personalize.RecipientView, **extra: Any
    ) -> dict[str, Any]:
        views: dict[str, dict[str, Any]] = {}
        for number, article in enumerate(layout.articles, 1):
            views[article.id] = self.article_view(article, edition, number, recipient)
        return self._context_of(
            [views[a.id] for a in layout.articles],
            [{"label": label, "articles": [views[a.id] for a in group]} for label, group in layout.groups],
            layout.contents,
            edition,
            recipient,
            **extra,
        )

    def _context_of(
        self,
        articles: list[dict[str, Any]],
        groups: list[dict[str, Any]],
        contents: bool,
        edition: Edition,
        recipient: personalize.RecipientView,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "newsletter": self.newsletter_view,
            "edition": edition,
            "articles": articles,
            "groups": groups,
            "contents": contents,
            "recipient": recipient,
            "web_url": web_version_url(self.config, edition.id),  #: "View in browser": one per edition
            **extra,
        }

    # --- the pieces ----------------------------------------------------------------------------

    #: What templates print to mark the pieces the fast path cuts the compiled HTML into.
    MARKERS = {
        "article_start": Markup(f"<mj-raw>{ARTICLE_MARKER}</mj-raw>"),
        "articles_end": Markup(f"<mj-raw>{END_MARKER}</mj-raw>"),
        "contents_start": Markup(f"<mj-raw>{CONTENTS_MARKER}</mj-raw>"),
        "contents_item": Markup(ITEM_MARKER),  # inside the contents' mj-text
        "contents_end": Markup(ITEMS_END_MARKER),
        "group_start": Markup(f"<mj-raw>{GROUP_MARKER}</mj-raw>"),
    }

    def render_mjml(
        self, layout: Layout, edition: Edition, recipient: personalize.RecipientView, preheader: str
    ) -> str:
        return self._render(
            self.mjml_template, **self._context(layout, edition, recipient, preheader=preheader, **self.MARKERS)
        )

    def _render_pool_mjml(self, pool: Sequence[Article], edition: Edition, labels: Sequence[str]) -> str:
        """The whole edition in one document, for the fast path: every candidate article (numbered
        with NUMBER_TOKEN), a contents line for each when any email can have a contents list, and
        one heading for each group label any email can have."""
        views = [self.article_view(a, edition, Markup(NUMBER_TOKEN), personalize.TOKENS) for a in pool]
        groups = [{"label": label, "articles": []} for label in labels] + [{"label": "", "articles": views}]
        contents = 0 < self.config.templates.contents_min_articles <= len(pool)
        context = self._context_of(views, groups, contents, edition, personalize.TOKENS, preheader=PREHEADER_TOKEN)
        return self._render(self.mjml_template, **context, **self.MARKERS)

    def compile_mjml(self, source: str) -> str:
        """mjml-python, then premailer with the settings the notes found necessary."""
        include_errors: list[TemplateError] = []

        def include(path: str) -> str:
            try:
                return self.theme.read_include(path)
            except TemplateError as exc:
                include_errors.append(exc)  # mjml-python only says "unable to load": keep ours
                raise

        try:
            # fonts={}: the default font list adds a Google Fonts <link> (a network fetch per open)
            html = mjml.mjml2html(source, fonts={}, include_loader=include)
        except (ValueError, TypeError) as exc:
            if include_errors:
                raise include_errors[0] from None
            raise TemplateError(f"{self.mjml_template}: MJML does not compile: {exc}") from None
        return Premailer(
            html,
            allow_network=False,  # the default downloads linked stylesheets for every email
            strip_important=False,  # keeps !important in the media queries: mobile layout needs it
            cssutils_logging_level=logging.CRITICAL,  # ~28 warnings per sheet about mso-* otherwise
            disable_validation=True,
            # premailer copies CSS width/height onto the element as attributes, turning every
            # image's pixel width="552" into "100%": Outlook desktop sizes images from the attribute
            disable_basic_attributes=["width", "height"],
        ).transform()

    def render_text(self, layout: Layout, edition: Edition, recipient: personalize.RecipientView) -> str:
        text = self._render(TEXT_TEMPLATE, **self._context(layout, edition, recipient))
        # Keep the author's blank lines but never more than one in a row.
        lines = [line.rstrip() for line in text.strip().splitlines()]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out) + "\n"

    def render_notice(self, mjml_name: str, text_name: str, **context: Any) -> tuple[str, str]:
        """(HTML, text) of a one-off email (signup.notices: confirmation, welcome) from its two
        templates, through the same environment, MJML and premailer as a digest."""
        context = {"newsletter": self.newsletter_view, **context}
        html = self.compile_mjml(self._render(mjml_name, **context))
        lines = [line.rstrip() for line in self._render(text_name, **context).strip().splitlines()]
        text = "\n".join(line for n, line in enumerate(lines) if line or (n and lines[n - 1]))
        return html, text + "\n"

    def render_line(self, name: str, layout: Layout, edition: Edition, recipient: personalize.RecipientView) -> str:
        return one_line(self._render(name, **self._context(layout, edition, recipient)))

    # --- the fast path -------------------------------------------------------------------------

    def _compile_pieces(self, pool: Sequence[Article], edition: Edition, labels: Sequence[str]) -> Pieces:
        html = self.compile_mjml(self._render_pool_mjml(pool, edition, labels))
        return Pieces.cut(html, len(pool), len(labels), self.mjml_template)

    def prepare(self, pool: Sequence[Article], edition: Edition) -> PreparedEdition:
        """Compile the frame, every candidate article, contents line and group heading once for this edition.

        MJML adds a component's CSS to the <head> only when the document uses it (mj-image's
        mobile rules, for one). If the frame alone lacks CSS that some block brings, the head would
        depend on the selection and assembled emails would differ from direct ones; so the frame is
        also compiled with no articles, and when the two heads differ every distinct content is
        compiled on its own instead (still once per content, never per subscriber).
        """
        labels = group_labels(pool) if self.config.templates.group_by == "tag" else ()
        pieces = self._compile_pieces(pool, edition, labels)
        exact = True
        if pool:
            empty = self._compile_pieces((), edition, ())
            exact = (empty.head, empty.tail) == (pieces.head, pieces.tail)
        return PreparedEdition(
            self,
            edition,
            personalize.tag_html(pieces.head),
            {a.id: personalize.tag_html(b) for a, b in zip(pool, pieces.articles, strict=True)},
            personalize.tag_html(pieces.tail),
            exact=exact,
            contents=tuple(personalize.tag_html(p) for p in pieces.contents),
            items={a.id: personalize.tag_html(b) for a, b in zip(pool, pieces.items, strict=False)},
            group_heads={label: personalize.tag_html(b) for label, b in zip(labels, pieces.groups, strict=True)},
        )

    # --- the reference path --------------------------------------------------------------------

    def compose_direct(self, selection: Selection, edition: Edition, values: Mapping[str, str]) -> Email:
        """Render one subscriber's email from scratch with real values. Slow; the reference."""
        layout = self.layout(selection)
        recipient = personalize.values_view(values)
        preheader = self.render_line(PREHEADER_TEMPLATE, layout, edition, recipient)
        html = MARKERS.sub("", self.compile_mjml(self.render_mjml(layout, edition, recipient, preheader)))
        return self.make_email(
            selection.subscriber,
            subject=self.render_line(SUBJECT_TEMPLATE, layout, edition, recipient),
            preheader=preheader,
            html=html,
            text=self.render_text(layout, edition, recipient),
            article_ids=selection.content_key,
            values=values,
        )

    def personalize(self, content: Content, subscriber: Subscriber, values: Mapping[str, str]) -> Email:
        """A shared content with one recipient's fields filled in: their final email."""
        fill = personalize.fill
        return self.make_email(
            subscriber,
            subject=fill(content.subject, values),
            preheader=fill(content.preheader, values),
            html=fill(content.html, values),
            text=fill(content.text, values),
            article_ids=content.article_ids,
            values=values,
        )

    def make_email(
        self,
        subscriber: Subscriber,
        *,
        subject: str,
        preheader: str,
        html: str,
        text: str,
        article_ids: tuple[str, ...],
        values: Mapping[str, str],
    ) -> Email:
        n = self.config.newsletter
        return Email(
            subscriber=subscriber,
            from_addr=formataddr((self.config.from_name, n.from_email)),
            to_addr=formataddr((subscriber.name, subscriber.email)),
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            article_ids=article_ids,
            reply_to=n.reply_to,
            headers=list_headers(self.config, values),
        )


def list_headers(config: Config, values: Mapping[str, str]) -> dict[str, str]:
    """List-Id, List-Unsubscribe and, with a real HTTPS unsubscribe endpoint, RFC 8058 one-click.

    Without an endpoint the footer's link is a mailto to the sender, and so is the header: mail
    apps still show their unsubscribe button for it (one-click needs HTTPS, so no -Post header).
    """
    s = config.sending
    headers = {"List-Id": f"<{s.list_id or config.newsletter.from_email.replace('@', '.')}>"}
    url = values.get("unsubscribe_url", "")
    if s.unsubscribe_url and url.startswith("https://"):
        targets = [f"<{url}>"]
        if s.unsubscribe_mailto:
            targets.append(f"<mailto:{s.unsubscribe_mailto}?subject=unsubscribe>")
        headers["List-Unsubscribe"] = ", ".join(targets)
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    elif s.unsubscribe_mailto:
        headers["List-Unsubscribe"] = f"<mailto:{s.unsubscribe_mailto}?subject=unsubscribe>"
    elif url.startswith("mailto:"):
        headers["List-Unsubscribe"] = f"<{url}>"
    return headers


@dataclass
class PreparedEdition:
    """An edition's compiled frame and article blocks; assembles each distinct content once."""

    composer: Composer
    edition: Edition
    head: str
    blocks: Mapping[str, str]
    tail: str
    exact: bool = True  #: False: the frame depends on the selection; compile each content whole
    contents: tuple[str, ...] = ()  #: (opening, closing) of the contents list; () when no email has one
    items: Mapping[str, str] = field(default_factory=dict)  #: each article's contents line
    group_heads: Mapping[str, str] = field(default_factory=dict)  #: each group label's heading
    _cache: OrderedDict[tuple[str, ...], Content] = field(default_factory=OrderedDict, repr=False)
    #: Distinct contents kept: a send takes each content's subscribers together, so a small LRU
    #: hits as well as an unbounded dict, and memory stays flat with thousands of contents.
    cache_size: int = 256

    def assemble(self, layout: Layout) -> str:
        """The HTML of `layout` from the compiled pieces: what a direct compile would give."""
        parts = [self.head]
        if layout.contents and self.contents:
            parts.append(self.contents[0])
            parts += (numbered(self.items[a.id], n) for n, a in enumerate(layout.articles, 1))
            parts.append(self.contents[1])
        number = 0
        for label, group in layout.groups:
            if label:
                parts.append(self.group_heads[label])
            for article in group:
                number += 1
                parts.append(numbered(self.blocks[article.id], number))
        parts.append(self.tail)
        return "".join(parts)

    def content(self, selection: Selection) -> Content:
        c = self.composer
        layout = c.layout(selection)
        key = layout.key
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tokens = personalize.TOKENS
        preheader = c.render_line(PREHEADER_TEMPLATE, layout, self.edition, tokens)
        if self.exact:
            html = self.assemble(layout)
        else:
            source = c.render_mjml(layout, self.edition, tokens, PREHEADER_TOKEN)
            html = personalize.tag_html(MARKERS.sub("", c.compile_mjml(source)))
        # The preheader sits in the frame but depends on the articles: it is a content-level token,
        # escaped as the text node it is (its own recipient tokens are then tagged as HTML text).
        html = html.replace(PREHEADER_TOKEN, personalize.tag_html(personalize.escape_text(preheader)))
        content = Content(
            key=key,
            article_ids=selection.content_key,
            subject=personalize.tag_plain(c.render_line(SUBJECT_TEMPLATE, layout, self.edition, tokens)),
            preheader=personalize.tag_plain(preheader),
            html=html,
            text=personalize.tag_plain(c.render_text(layout, self.edition, tokens)),
        )
        self._cache[key] = content
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return content

    def email(self, selection: Selection, values: Mapping[str, str]) -> Email:
        """One subscriber's final email: shared content with their fields filled in."""
        return self.composer.personalize(self.content(selection), selection.subscriber, values)


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line of an error raised while rendering, from the traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename or tb.tb_frame.f_globals.get("__jinja_template__"):
            try:
                line = template.get_corresponding_lineno(tb.tb_lineno)
            except Exception:  # noqa: BLE001 - best effort only
                pass
        tb = tb.tb_next
    return line
