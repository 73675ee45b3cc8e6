"""Where the email templates come from: the packaged default theme, overridden file by file.

The default theme is the repository's `templates/` folder, shipped inside the package as
`digest.default_theme` (pyproject maps the one onto the other), so `pip install` alone can build a
digest. A `[templates] path` folder that exists is searched first: a user changes one partial by
putting that one file there, and everything else still comes from the theme. Jinja's `{% include %}`
/ `{% extends %}` and MJML's `<mj-include>` resolve through the same chain.
"""

from __future__ import annotations

import importlib.resources
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from digest.config import Config
from digest.errors import TemplateError
from digest.models import Problem

THEME_PACKAGE = "digest.default_theme"
#: Only these are theme files (the package also holds its __init__.py and maybe __pycache__).
THEME_SUFFIXES = (".j2", ".mjml")


def packaged_theme() -> Path:
    """The folder of the packaged theme (inside site-packages, or the checkout's templates/ when
    installed in editable mode)."""
    return Path(str(importlib.resources.files(THEME_PACKAGE)))


def theme_files(folder: Path) -> list[str]:
    """The template files under `folder`, as sorted POSIX paths relative to it."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name.endswith(THEME_SUFFIXES) and "__pycache__" not in p.parts
    )


@dataclass(frozen=True)
class Theme:
    """The template search path of one config: the user's folder (if it exists), then the theme."""

    folder: Path  #: `[templates] path` as configured, whether or not it exists
    packaged: Path

    @classmethod
    def of(cls, config: Config) -> Theme:
        return cls(config.templates.path, packaged_theme())

    @property
    def search_path(self) -> tuple[Path, ...]:
        user = (self.folder,) if self.folder.is_dir() and self.folder.resolve() != self.packaged.resolve() else ()
        return (*user, self.packaged)

    def loader(self) -> jinja2.BaseLoader:
        return jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(p)) for p in self.search_path])

    def read_include(self, path: str) -> str:
        """An `<mj-include path="...">` file's text, from the first folder that has it.

        Includes stay inside the search path: no absolute paths, no `..`."""
        rel = PurePosixPath(path.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise TemplateError(f"mj-include {path!r}: only files inside the templates folder can be included")
        for folder in self.search_path:
            candidate = folder / rel
            if candidate.is_file():
                try:
                    return candidate.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise TemplateError(f"{candidate}: cannot read: {exc}") from None
        raise TemplateError(f"mj-include {path!r}: not in {self.where()}")

    def overrides(self) -> list[str]:
        """Files of the user's folder that the theme also has (replaced) or lacks (added)."""
        if len(self.search_path) == 1:
            return []
        return theme_files(self.folder)

    def where(self) -> str:
        """The search path in words, for messages."""
        if len(self.search_path) == 1:
            return "the packaged theme"
        return f"{self.folder} nor the packaged theme"

    def describe(self) -> str:
        """One line for `digest check --verbose`."""
        if len(self.search_path) == 1:
            missing = f" (no folder at {self.folder})" if not self.folder.is_dir() else ""
            return f"templates: the packaged theme{missing}"
        own = self.overrides()
        shown = ", ".join(own[:5]) + (" ..." if len(own) > 5 else "")
        return f"templates: {len(own)} file(s) from {self.folder} ({shown or 'none'}), the rest from the packaged theme"


def theme_problems(config: Config) -> list[Problem]:
    """A `[templates] path` set to a folder that is not there: probably a typo, since the packaged
    theme is then used silently. The default path (`templates` beside the config) may be absent."""
    folder = config.templates.path
    if config.source is None or folder.is_dir() or folder == (config.source.parent / "templates").resolve():
        return []
    return [
        Problem(
            str(config.source), f"templates.path {folder} is not a folder; using the packaged theme", severity="warning"
        )
    ]


def copy_theme(dest: Path) -> list[Path]:
    """Copy the packaged theme into `dest` (which must not exist): an editable copy of every file."""
    source = packaged_theme()
    written = []
    for name in theme_files(source):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)
        written.append(target)
    return written
