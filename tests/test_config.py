from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import describe_schema, load_config
from digest.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_relative_paths_resolve_from_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", '[content]\npath = "posts"\n')
    config = load_config(path)
    assert config.content.path == (tmp_path / "sub" / "posts").resolve()
    assert config.selection.window_days == 7 and config.selection.max_articles == 10
    assert config.source == path.resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[selection]\nwindow_days = 'seven'\n", "selection.window_days must be an integer"),
        ("[selection]\nmax_articles = true\n", "selection.max_articles must be an integer"),
        ("[selection]\nwindow_dayz = 7\n", "selection.window_dayz is not a known key"),
        ("[newsletterr]\nname = 'x'\n", "unknown section [newsletterr]"),
        ("[selection]\nexclude_tags = 'ai'\n", "selection.exclude_tags must be a list"),
        ("[newsletter]\ntimezone = 'Mars/Olympus'\n", "is not an IANA time zone"),
        ("[selection]\nmin_articles = 5\nmax_articles = 2\n", "min_articles <= max_articles"),
        ("[newsletter\n", "not valid TOML"),
        ("[templates]\ngroup_by = 'topic'\n", 'templates.group_by must be "" or "tag"'),
        ("[templates]\ncontents_min_articles = -1\n", "templates.contents_min_articles must be between 0 and 200"),
        ("[newsletter]\nlanguage = 'english please'\n", "newsletter.language must be a language tag"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_every_option_is_documented_in_the_schema_and_the_reference():
    reference = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    for section, key, _default, doc in describe_schema():
        assert doc, f"{section}.{key} has no doc"
        assert f"`{key}`" in reference, f"docs/configuration.md lacks [{section}] {key}"


def test_unsubscribe_and_preferences_urls_must_be_https(tmp_path):
    for key in ("unsubscribe_url", "preferences_url"):
        path = write(tmp_path, f'[sending]\n{key} = "http://news.example.com/x"\n')
        with pytest.raises(ConfigError, match=f"sending.{key} must be an https:// URL"):
            load_config(path)
