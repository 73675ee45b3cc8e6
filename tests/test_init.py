"""`digest init` on real-shaped blogs of each generator (tests/data/blogs/), then `digest check`
and the links the digest would send, through Click's test runner."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, SAMPLE_AT
from feed_server import FeedServer, Route
from hypothesis import given
from hypothesis import strategies as st

from digest.cli import main
from digest.config import load_config
from digest.init import toml_string
from digest.pipeline import open_run

BLOGS = DATA / "blogs"
AT = SAMPLE_AT.strftime("%Y-%m-%dT%H:%M")


def copy_blog(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(BLOGS / name, dest)
    return dest


def run(*args: str, cwd: Path | None = None, monkeypatch: pytest.MonkeyPatch | None = None):
    if cwd is not None and monkeypatch is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# (folder, first line, content folder, articles read, a post's title and the link the digest sends)
BLOG_CASES = [
    (
        "hugo",
        "Found a Hugo site: 'Gopher Field Notes' (https://hugo.example.org/), from hugo.toml",
        "content/posts",
        "Read as the digest will: 2 article(s); skipped on purpose: 1 list page(s), 1 draft(s); problems: 0",
        ("Second post: a page bundle", "https://hugo.example.org/posts/second-post/"),
    ),
    (
        "jekyll",
        'Found a Jekyll site: "Tinkerer\'s Log" (https://tinkerer.example.org/log), from _config.yml',
        "_posts",
        "Read as the digest will: 4 article(s); skipped on purpose: none; problems: 0",
        ("Welcome to Jekyll!", "https://tinkerer.example.org/log/2026/11/23/welcome-to-jekyll/"),
    ),
    (
        "astro",
        "Found an Astro site: 'Stardust Weekly' (https://astro.example.org), from astro.config.mjs, src/consts.ts",
        "src/content/blog",
        "Read as the digest will: 3 article(s); skipped on purpose: none; problems: 0",
        ("Using MDX", "https://astro.example.org/blog/using-mdx/"),
    ),
    (
        "nextjs",
        "Found a Next.js site: 'Next.js Starter Blog' (https://tailwind-nextjs-starter-blog.vercel.app), "
        "from data/siteMetadata.js",
        "data/blog",
        "Read as the digest will: 3 article(s); skipped on purpose: 1 draft(s), 1 list page(s); problems: 0",
        ("Sample .md file", "https://tailwind-nextjs-starter-blog.vercel.app/blog/code-sample"),
    ),
    (
        "gatsby",
        "Found a Gatsby site: 'Gatsby Starter Blog' (https://gatsbystarterblogsource.gatsbyjs.io/), "
        "from gatsby-config.js",
        "content/blog",
        "Read as the digest will: 3 article(s); skipped on purpose: none; problems: 0",
        ("New Beginnings", "https://gatsbystarterblogsource.gatsbyjs.io/new-beginnings/"),
    ),
    (
        "eleventy",
        "Found an Eleventy site: 'Eleventy Base Blog v9' (https://eleventy.example.org/), from _data/metadata.js",
        "content/blog",
        "Read as the digest will: 3 article(s); skipped on purpose: none; problems: 0",
        ("This is my fourth post.", "https://eleventy.example.org/blog/fourthpost/"),
    ),
    (
        "plain",
        "Found a folder of posts: 'Plain'",
        "posts",
        "Read as the digest will: 2 article(s); skipped on purpose: 1 non-article file(s), 1 pagination page(s); "
        "problems: 0",
        ("Weeknotes 48", "https://example.com/weeknotes-48"),
    ),
]


@pytest.mark.parametrize(("name", "found", "folder", "read", "link"), BLOG_CASES, ids=[c[0] for c in BLOG_CASES])
def test_init_on_each_generator(tmp_path, monkeypatch, name, found, folder, read, link):
    blog = copy_blog(name, tmp_path)
    result = run("init", cwd=blog, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == found
    assert f"Content: {blog / folder} (" in result.output
    assert read in lines
    # (with an `--at` just after the newest post once the fixtures are older than a week)
    commands = [re.sub(r" --at \S+$", "", line) for line in lines[-4:]]
    assert commands == ["Next:", "  digest check", "  digest preview", "  digest send --dry-run"]

    config = load_config(blog / "digest.toml")
    assert config.content.path == (blog / folder).resolve()
    assert (blog / "_newsletter" / "subscribers.csv").is_file()
    assert not (blog / "_newsletter" / "templates").exists()  # no templates unless asked

    check = run("check", "--at", AT)
    assert check.exit_code == 0, check.output
    assert " error:" not in check.output and "0 error(s)" in check.output

    # the link a digest would send for one known post
    title, url = link
    run_ = open_run(config, SAMPLE_AT)
    (article,) = [a for a in run_.content.articles if a.title == title]
    assert article.url == url


def test_init_on_jekyll_splits_a_string_of_categories_at_spaces(tmp_path, monkeypatch):
    blog = copy_blog("jekyll", tmp_path)
    assert run("init", cwd=blog, monkeypatch=monkeypatch).exit_code == 0
    config = load_config(blog / "digest.toml")
    assert config.content.term_separator == "space"
    (article,) = [a for a in open_run(config, SAMPLE_AT).content.articles if a.title == "Welcome to Jekyll!"]
    assert article.categories == ("jekyll", "update")  # `categories: jekyll update`, as Jekyll reads it


def test_init_reports_the_front_matter_spellings(tmp_path, monkeypatch):
    result = run("init", cwd=copy_blog("astro", tmp_path), monkeypatch=monkeypatch)
    lines = result.output.splitlines()
    assert "Front matter of 3 sampled file(s):" in lines
    assert "  date        pubDate (3)" in lines
    assert "  cover       heroImage (3)" in lines
    assert "  excerpt     description (3)" in lines
    assert "  tags        none" in lines
    assert "  not read:   updatedDate (1)" in lines


def test_the_seed_layout_and_an_old_blog_get_an_at_that_shows_a_digest(tmp_path, monkeypatch):
    blog = copy_blog("seed", tmp_path)
    result = run("init", cwd=blog, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "Read as the digest will: 1 article(s); skipped on purpose: none; problems: 0" in result.output
    assert "Your newest post is from 2025-07-21: --at shows the digest of that week." in result.output
    assert result.output.endswith(
        "  digest check --at 2025-07-22T00:00\n  digest preview --at 2025-07-22T00:00\n"
        "  digest send --dry-run --at 2025-07-22T00:00\n"
    )
    page = run("preview", "--at", "2025-07-22T00:00", "--get", "/")
    assert page.exit_code == 0
    assert "OpenAI is getting closer with the UK government" in page.output


def test_init_pointed_at_a_folder_prints_commands_with_its_config(tmp_path, monkeypatch):
    copy_blog("jekyll", tmp_path)
    result = run("init", "jekyll", cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "  digest --config jekyll/digest.toml check" in [
        re.sub(r" --at \S+$", "", x) for x in result.output.splitlines()
    ]
    assert "add `exclude: [digest.toml]` to _config.yml" in result.output  # Jekyll would publish it


def test_init_refuses_to_overwrite_anything_and_writes_nothing(tmp_path, monkeypatch):
    blog = copy_blog("hugo", tmp_path)
    (blog / "_newsletter").mkdir()
    (blog / "_newsletter" / "subscribers.csv").write_text("email\nmine@example.com\n")
    result = CliRunner().invoke(main, ["init", str(blog)])
    assert result.exit_code == 1
    assert result.output == (
        f"error: {blog / '_newsletter' / 'subscribers.csv'} already exists; digest init never overwrites "
        "(move it away first)\n"
    )
    assert not (blog / "digest.toml").exists()  # all or nothing
    assert (blog / "_newsletter" / "subscribers.csv").read_text() == "email\nmine@example.com\n"
    (blog / "_newsletter" / "subscribers.csv").unlink()
    assert run("init", str(blog)).exit_code == 0
    second = CliRunner().invoke(main, ["init", str(blog)])
    assert second.exit_code == 1 and "digest.toml already exists" in second.output


def test_init_with_templates_gives_an_editable_copy_that_is_used(tmp_path, monkeypatch):
    blog = copy_blog("gatsby", tmp_path)
    result = run("init", "--templates", cwd=blog, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    copy = blog / "_newsletter" / "templates"
    assert (copy / "digest.mjml.j2").is_file() and (copy / "partials" / "article.mjml.j2").is_file()
    config = load_config(blog / "digest.toml")
    assert config.templates.path == copy.resolve()
    (copy / "subject.j2").write_text("Edited: {{ articles[0].title }}")
    out = blog / "out"
    assert run("build", "--at", AT, "--out", str(out)).exit_code == 0
    assert all("Subject: Edited: " in p.read_text() for p in out.glob("*.eml"))


def test_init_without_a_blog_says_what_to_pass(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["init", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "found no folder of articles" in result.output and "--content FOLDER" in result.output
    assert list((tmp_path / "empty").iterdir()) == []


def test_init_with_content_names_the_folder(tmp_path, monkeypatch):
    blog = copy_blog("plain", tmp_path)
    result = run("init", "--content", "posts/2026", cwd=blog, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert load_config(blog / "digest.toml").content.path == (blog / "posts" / "2026").resolve()


def test_init_with_only_a_feed(tmp_path, monkeypatch):
    """A hosted blog (WordPress, Ghost, Substack ...) has no folder, only a feed: that is enough."""
    with FeedServer() as server:
        server.routes["/feed/"] = Route.file("wordpress_rss2.xml")
        folder = tmp_path / "news"
        folder.mkdir()
        result = run("init", "--feed", server.url("/feed/"), cwd=folder, monkeypatch=monkeypatch)
        assert result.exit_code == 0, result.output
        assert (
            "Found no blog folder; reading the feed of 'Allotment Diaries' (https://allotment.example.org)"
            in result.output
        )
        assert f"Feed {server.url('/feed/')}: 4 entries" in result.output
        config = load_config(folder / "digest.toml")
        assert config.content.feeds == [server.url("/feed/")]
        assert config.newsletter.name == "Allotment Diaries"
        assert config.newsletter.from_email == "newsletter@allotment.example.org"
        check = run("check", "--at", AT)
        assert check.exit_code == 0 and "0 error(s)" in check.output, check.output
        page = run("preview", "--at", AT, "--get", "/")
        assert page.exit_code == 0 and "Planting garlic before the frost" in page.output


def test_config_files_are_read_as_data_never_run(tmp_path, monkeypatch):
    """Hostile or odd generator configs: a YAML alias bomb, a URL from the environment, a repository
    homepage, a huge file. None may crash init or end up as the site URL."""
    blog = copy_blog("jekyll", tmp_path)
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (blog / "_config.yml").write_text(lol + "title: Bomb\nurl: https://bomb.example\n")
    result = run("init", cwd=blog, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert load_config(blog / "digest.toml").newsletter.site_url == "https://example.com"  # the bomb is ignored

    astro = copy_blog("astro", tmp_path)
    (astro / "astro.config.mjs").write_text("export default defineConfig({ site: process.env.SITE_URL });\n")
    (astro / "package.json").write_text('{"name": "x", "homepage": "https://github.com/me/blog#readme"}')
    (astro / "src" / "consts.ts").write_text("export const SITE_TITLE = `${NAME} blog`;\n" + "// " + "x" * 600_000)
    result = run("init", cwd=astro, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    config = load_config(astro / "digest.toml")
    assert config.newsletter.site_url == "https://example.com" and config.newsletter.name == "X"


@given(st.text(max_size=60))
def test_names_with_any_characters_survive_the_written_toml(name):
    assert tomllib.loads(f"name = {toml_string(name)}\n")["name"] == name
