"""Composition: templates -> MJML -> HTML (+ text part, subject, preheader).

Two paths produce byte-identical emails:

* The fast path (assembly.py): `PreparedEdition.compile(composer, pool, edition)` renders ONE document holding
  every candidate article, a contents line for each and a heading for each topic group, with
  markers between them (layout.py), compiles it once and cuts it into pieces: the frame, article
  blocks, contents lines and group headings. Each distinct layout (story order, groups, contents
  list) is then assembled from those pieces: MJML and premailer run once per edition, not once
  per subscriber (premailer alone costs ~18 ms an email). Article views (links with UTM, dates)
  are computed once per article and edition, and the text part's folded paragraphs once per text.
* `Composer.compose_direct(selection, ...)` renders one subscriber's email from scratch. It is the
  reference the fast path is tested against (tests/test_fast_path.py: random selections, configs,
  components and segment templates) and the benchmark's naive baseline.

What keeps the two identical, and what the fast path checks before it trusts itself:

* The frame must not depend on the selection, and a piece must not depend on its neighbours or
  its position except through placeholders (below). Both are checked on the rendered source when
  an edition is prepared; a template that breaks either still gets exact emails, compiled whole
  once per distinct layout, and `digest check` and `send --dry-run` name it and say why.
* MJML adds a component's CSS to the <head> only when the document uses it (mj-image's mobile
  rules, a 50% column's media query), in the order it first meets them. Each piece is therefore
  classed by the head CSS it brings, and a digest's head belongs to the sequence of its pieces'
  classes in first-seen order (a "head variant": a handful per edition, e.g. with and without a
  cover when there is no logo). The first digest of each variant is compiled whole; its head,
  tail and contents frame serve the variant from then on, provided the digest assembled from
  them equals that whole compile (else the variant stays whole-compiled and is reported).

Extension point: per-position values and more kinds of pieces. A piece may carry per-position
placeholders, filled at assembly for the position its story takes in a digest: `item.number`
renders as `layout.NUMBER_TOKEN` in the pool document and as the real number in a direct render,
so numbered stories and contents lines are still compiled once. A new value must print the same
in HTML text, attributes and plain text (digits do), or be tagged per context like the recipient
tokens (personalize.py), and must not pass through a filter that measures text (wrap, truncate).
A new kind of piece (say, a "most read" line per article) needs: a marker the template prints
before each one (layout.MARKERS and Composer.MARKERS), its place in the pool document
(`render_pool_mjml`) and in `Pieces.cut`, its place in a layout (`Layout`, and
`PreparedEdition._assemble_html` / `_variant_key` in assembly.py, which class it like the others),
and the same position check (`PreparedEdition._independent`). Pieces per article are cut in pool
order; pieces keyed otherwise (group headings, one per label) are cut in the order of their keys.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
)
from digest.links import web_version_url
from digest.models import Article, Edition, Email, Selection, Subscriber
from digest.selection import topic_groups
from digest.text import TEXT_WIDTH, one_line, wrap
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
            undefined=_Undefined,
            keep_trailing_newline=False,
            # a composer lives for one run (the preview makes a new one on every edit): without this,
            # every render stats each template file to see whether it changed
            auto_reload=False,
        )
        # folding is a pure function of the text: each excerpt is folded once per run, not per digest
        self.env.filters["wrap"] = _memo_wrap
        self.env.globals["web_version"] = False  # the archive's composer renders its pages with True
        #: (article id, reader's click token) -> (the article, the edition, its view without a number)
        self._views: dict[tuple[str, str], tuple[Article, Edition, dict[str, Any]]] = {}

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

    def view(
        self, article: Article, edition: Edition, number: int | str, recipient: personalize.RecipientView | None
    ) -> dict[str, Any]:
        """`article_view`, computed once per article, edition and reader's click token (the same
        for everyone but with first-party clicks tracked) and copied with its number."""
        token = recipient.click_token if recipient is not None and self.clicks.enabled else ""
        key = (article.id, token)
        cached = self._views.get(key)
        if cached is None or cached[0] is not article or cached[1] is not edition:
            if len(self._views) >= 65_536:
                self._views.clear()  # a whole-compile send with clicks tracked: one per reader
            cached = self._views[key] = (article, edition, self.article_view(article, edition, 0, recipient))
        return {**cached[2], "number": number}

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
            views[article.id] = self.view(article, edition, number, recipient)
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

    def render_pool_mjml(self, pool: Sequence[Article], edition: Edition, labels: Sequence[str]) -> str:
        """The whole edition in one document, for the fast path: every candidate article (numbered
        with NUMBER_TOKEN), a contents line for each when any email can have a contents list, and
        one heading for each group label any email can have."""
        views = [self.view(a, edition, Markup(NUMBER_TOKEN), personalize.TOKENS) for a in pool]
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
        inlined: str = Premailer(
            html,
            allow_network=False,  # the default downloads linked stylesheets for every email
            strip_important=False,  # keeps !important in the media queries: mobile layout needs it
            cssutils_logging_level=logging.CRITICAL,  # ~28 warnings per sheet about mso-* otherwise
            disable_validation=True,
            # premailer copies CSS width/height onto the element as attributes, turning every
            # image's pixel width="552" into "100%": Outlook desktop sizes images from the attribute
            disable_basic_attributes=["width", "height"],
        ).transform()
        try:
            personalize.refuse_field_names(inlined)
        except TemplateError as exc:
            raise TemplateError(f"{self._template(self.mjml_template).filename or self.mjml_template}: {exc}") from None
        return inlined

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


@functools.lru_cache(maxsize=4096)
def _wrap(text: str, width: int) -> str:
    return wrap(text, width)


def _memo_wrap(text: Any, width: int = TEXT_WIDTH) -> str:
    return _wrap(str(text), width)


class _Undefined(jinja2.StrictUndefined):
    """An unknown name is an error, never a silent blank; for `recipient.<name>` the error lists
    the fields there are (Jinja turns the AttributeError that says so into its own message)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, personalize.RecipientView) and isinstance(self._undefined_name, str):
            if not self._undefined_name.startswith("_"):
                return personalize.no_field(self._undefined_name)
        return super()._undefined_message


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line of an error raised while rendering: Jinja rewrites the traceback so that
    frames of template code carry the template's file name and its own line numbers
    (jinja2.debug.rewrite_traceback_stack); the deepest frame of this template is where it failed."""
    where = template.filename or "<template>"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == where:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
