"""newsletter-digest: a personal weekly email digest for each subscriber, sent exactly once."""

from __future__ import annotations

__version__ = "0.1.0"
