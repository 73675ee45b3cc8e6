"""The packaged default theme and file-by-file overrides (real jinja2, mjml-python, premailer)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE_AT, copy_sample, make_config

from digest.check import check
from digest.config import load_config
from digest.errors import TemplateError
from digest.pipeline import open_run
from digest.theme import copy_theme, packaged_theme, theme_files


def sample_config(tmp_path: Path, **templates: str):
    shutil.copytree(ROOT / "content", tmp_path / "content")
    shutil.copytree(ROOT / "subscribers", tmp_path / "subscribers")
    sections = {
        "content": {"path": "content", "article_url": "https://circuit.example.com/posts/{slug}"},
        "subscribers": {"path": "subscribers/subscribers.csv"},
        "state": {"path": "state"},
    }
    # no `path`: the default, `templates` beside the config (make_config would use the repo's)
    return make_config(tmp_path, **sections, templates=templates or {"path": "templates"})


def grace_email(config):
    run = open_run(config, SAMPLE_AT)
    grace = next(s for s in run.subscribers.subscribers if s.email == "grace@example.org")
    return run.email(run.select(grace))


def test_the_packaged_theme_is_the_repository_templates_folder():
    # one copy: in an editable install the package maps onto templates/ itself
    theme = packaged_theme()
    assert theme_files(theme) == theme_files(ROOT / "templates")
    for name in ("digest.mjml.j2", "partials/article.mjml.j2", "digest.txt.j2", "subject.j2", "preheader.j2"):
        assert name in theme_files(theme)


def test_every_package_is_listed_in_pyproject():
    """The package list is explicit (a package-dir mapping is invisible to find): a new
    subpackage that is not listed would be missing from the wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.relative_to(ROOT).parts)
        for p in (ROOT / "digest").rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(f.is_file() for f in p.iterdir())
    } | {"digest"}
    theme = {
        ".".join(("digest", "default_theme", *p.relative_to(ROOT / "templates").parts))
        for p in [ROOT / "templates", *(ROOT / "templates").rglob("*")]
        if p.is_dir() and p.name != "__pycache__"
    }
    assert listed == on_disk | theme


def test_no_templates_folder_renders_with_the_packaged_theme(tmp_path):
    packaged = grace_email(sample_config(tmp_path / "a"))  # templates/ beside the config: absent
    repo = grace_email(sample_config(tmp_path / "b", path=str(ROOT / "templates")))
    assert packaged.html == repo.html and packaged.text == repo.text and packaged.subject == repo.subject
    assert "Hi Grace" in packaged.html


def test_one_file_overrides_the_theme_and_the_rest_comes_from_it(tmp_path):
    own = tmp_path / "own"
    (own / "partials").mkdir(parents=True)
    (own / "subject.j2").write_text("Custom: {{ articles[0].title }}")
    (own / "partials" / "article.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>USER PARTIAL {{ item.title }}</mj-text></mj-column></mj-section>"
    )
    email = grace_email(sample_config(tmp_path, path=str(own)))
    assert email.subject.startswith("Custom: ")
    # the frame's include resolved to the user's partial, the frame itself came from the theme
    assert email.html.count("USER PARTIAL") == len(email.article_ids)
    assert "Hi Grace" in email.html and "grace@example.org" in email.html
    assert "Read more" not in email.html  # the packaged partial's button is gone


def test_mj_include_resolves_through_the_same_chain(tmp_path):
    own = tmp_path / "own"
    (own / "partials").mkdir(parents=True)
    (own / "partials" / "article.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>{{ item.title }}</mj-text></mj-column></mj-section>"
        '<mj-include path="partials/divider.mjml" />'
    )
    (own / "partials" / "divider.mjml").write_text(
        "<mj-section><mj-column><mj-text>INCLUDED DIVIDER</mj-text></mj-column></mj-section>"
    )
    email = grace_email(sample_config(tmp_path, path=str(own)))
    assert email.html.count("INCLUDED DIVIDER") == len(email.article_ids)

    (own / "partials" / "divider.mjml").unlink()
    with pytest.raises(TemplateError, match=r"mj-include 'partials/divider.mjml': not in .*own nor the packaged theme"):
        grace_email(sample_config(tmp_path / "2", path=str(own)))

    (own / "partials" / "article.mjml.j2").write_text(
        '<mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section><mj-include path="../../etc/passwd" />'
    )
    with pytest.raises(TemplateError, match="only files inside the templates folder"):
        grace_email(sample_config(tmp_path / "3", path=str(own)))


def test_a_template_missing_everywhere_names_the_search_path(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "digest.mjml.j2").write_text('<mjml><mj-body>{% include "partials/nope.mjml.j2" %}</mj-body></mjml>')
    with pytest.raises(TemplateError, match=r"partials/nope.mjml.j2: template not found in .*own nor the packaged"):
        grace_email(sample_config(tmp_path, path=str(own)))


def test_a_configured_folder_that_is_missing_is_a_check_warning(tmp_path):
    def warnings(folder: Path, templates: str) -> list[str]:
        config_path = copy_sample(folder)
        shutil.rmtree(folder / "templates")
        text = config_path.read_text().replace('[state]\npath = "state"', f'[state]\npath = "state"\n{templates}')
        config_path.write_text(text)
        return [
            p.message for p in check(open_run(load_config(config_path), SAMPLE_AT)) if "templates.path" in p.message
        ]

    (message,) = warnings(tmp_path / "typo", '[templates]\npath = "templaets"')
    assert message.endswith("templaets is not a folder; using the packaged theme")
    # the default, `templates` beside the config, may simply be absent
    assert warnings(tmp_path / "default", "") == []


def test_an_editable_copy_renders_exactly_like_the_theme(tmp_path):
    written = copy_theme(tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix() for p in written) == theme_files(packaged_theme())
    assert not (tmp_path / "copy" / "__init__.py").exists()
    copied = grace_email(sample_config(tmp_path / "x", path=str(tmp_path / "copy")))
    packaged = grace_email(sample_config(tmp_path / "y"))
    assert copied.html == packaged.html
