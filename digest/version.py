"""The package version, in one place (the feed reader's User-Agent names it too)."""

from __future__ import annotations

__version__ = "0.1.0"
