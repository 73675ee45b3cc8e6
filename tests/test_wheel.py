"""The wheel works outside the repository: build it, install it into a fresh venv in a temp folder,
and start a newsletter for a generated Hugo blog and a Jekyll blog with nothing but the installed
`digest` command (init, check, build, preview --get).

How the fresh venv gets its dependencies without the network: it is created `--without-pip`, and a
`.pth` file puts the test venv's site-packages *after* its own. Python adds the lines of a `.pth`
to sys.path but does not process the `.pth` files found there, so the test venv's editable install
of this checkout is NOT importable from the fresh venv: `digest` can only come from the wheel (the
test asserts so). The wheel is built from a copy of the sources with the test venv's own setuptools
(`--no-build-isolation`, `--no-index`) and installed by the test venv's pip (`pip --python`,
`--no-deps`, `--no-index`): no download, whatever CI's pip install already did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from digest.theme import theme_files

pytestmark = pytest.mark.slow

AT = "2026-11-30T00:00"


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with only the wheel installed."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("digest", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    sh(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src, cwd=work)
    (wheel,) = dist.glob("newsletter_digest-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    shipped = sorted(n.removeprefix("digest/default_theme/") for n in names if n.startswith("digest/default_theme/"))
    assert [n for n in shipped if n != "__init__.py"] == theme_files(ROOT / "templates")
    assert "digest/web/templates/index.html" in names

    venv = work / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    own = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work).stdout.strip())
    seeds = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (own / "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in seeds))
    sh(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=work)

    # digest comes from the wheel in the fresh venv, never from this checkout
    where = sh(
        python,
        "-c",
        "import digest, digest.theme as t; print(digest.__file__); print(t.packaged_theme())",
        cwd=work,
        env=clean_env(),
    ).stdout.splitlines()
    assert where[0].startswith(str(own)) and where[1].startswith(str(own)), where
    assert str(ROOT) not in "".join(where)
    return venv / "bin"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def hugo_blog(root: Path) -> Path:
    write(root / "hugo.toml", "baseURL = 'https://gophers.example.org/'\ntitle = 'Gopher Notes'\ntimeZone = 'UTC'\n")
    write(root / "content" / "_index.md", "---\ntitle: Home\n---\n")
    write(root / "content" / "posts" / "_index.md", "+++\ntitle = 'Posts'\n+++\n")
    for day in (24, 26, 27):
        write(
            root / "content" / "posts" / f"note-{day}.md",
            f"+++\ntitle = 'Field note {day}'\ndate = 2026-11-{day}T09:00:00-07:00\ntags = ['go', 'Field']\n"
            f"description = 'What happened on the {day}th.'\n+++\nBody of note {day}.\n",
        )
    write(root / "content" / "posts" / "idea.md", "+++\ntitle = 'Idea'\ndraft = true\n+++\n")
    return root


def jekyll_blog(root: Path) -> Path:
    write(
        root / "_config.yml",
        "title: Tinker Log\nurl: https://tinker.example.org\nbaseurl: ''\ntimezone: Europe/Berlin\n"
        "permalink: /:year/:month/:day/:title/\n",
    )
    write(root / "index.md", "---\nlayout: home\n---\n")
    for day in (23, 25, 28):
        write(
            root / "_posts" / f"2026-11-{day}-build-{day}.markdown",
            f"---\nlayout: post\ntitle: 'Build log {day}'\ndate: 2026-11-{day} 4:00:00 +0000\n"
            f"tags: [hardware]\n---\nSoldered something on the {day}th.\n",
        )
    return root


@pytest.mark.parametrize("make", [hugo_blog, jekyll_blog], ids=["hugo", "jekyll"])
def test_the_installed_wheel_starts_a_newsletter_for_a_blog(installed, tmp_path, make):
    blog = make(tmp_path / "blog")
    env = clean_env()
    digest = installed / "digest"

    init = sh(digest, "init", cwd=blog, env=env).stdout
    # (with an `--at` just after the newest post once these posts are older than a week)
    commands = [re.sub(r" --at \S+$", "", line) for line in init.splitlines()[-4:]]
    assert commands == ["Next:", "  digest check", "  digest preview", "  digest send --dry-run"]

    check = sh(digest, "check", "--verbose", "--at", AT, cwd=blog, env=env).stdout
    assert "0 error(s)" in check
    assert "templates: the packaged theme" in check
    assert "content: 3 article(s)" in check

    build = sh(digest, "build", "--at", AT, cwd=blog, env=env).stdout
    assert "built 2 digest(s)" in build
    emls = sorted((blog / "_newsletter" / "outbox").glob("*.eml"))
    assert [p.name for p in emls] == ["fan@example.org.eml", "reader@example.com.eml"]

    index = sh(digest, "preview", "--at", AT, "--get", "/", cwd=blog, env=env).stdout
    title = "Field note 27" if make is hugo_blog else "Build log 28"
    assert title in index
    html = sh(digest, "preview", "--at", AT, "--get", "/subscribers/reader@example.com/email.html", cwd=blog, env=env)
    assert title in html.stdout and "<html" in html.stdout.lower()
    dry = sh(digest, "send", "--dry-run", "--at", AT, cwd=blog, env=env).stdout
    assert "would send 2 email(s)" in dry
