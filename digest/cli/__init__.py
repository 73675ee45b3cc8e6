"""The `digest` command: thin Click wrappers that parse flags, call one library function, print.

One module per group of verbs (as MkDocs keeps `commands/build.py`, `commands/serve.py`):

- build.py: build, check, preview
- sending.py: send, status, sync, test-send
- subscribers.py: subscribers export|show|forget|purge|import
- state.py: state migrate|info|copy|backup|restore
- schedule.py: schedule, scheduler
- serve.py: serve, form
- project.py: init, report, archive, segments

Each registers its commands on `main` (base.py) when imported; importing them here is what makes
`digest` whole. The library each command calls is imported inside the command, so `digest --help`
loads no Jinja2, no SendGrid client and no web stack.
"""

from __future__ import annotations

from digest.cli import build, project, schedule, sending, serve, state, subscribers
from digest.cli.base import main

__all__ = ["main"]

# imported for their commands, registered on `main`
_COMMANDS = (build, project, schedule, sending, serve, state, subscribers)
