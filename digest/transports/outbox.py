"""The outbox transport: each digest as an .eml file in `<output>/<edition>/`. The default, so
the sample newsletter "sends" with no account; also a way to inspect a real send beforehand."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from digest.message import eml_name, message_id, to_bytes
from digest.transports.base import Batch, Outcome, Unschedulable, render_failed


class OutboxTransport(Unschedulable):
    name = "outbox"
    max_batch = 1
    concurrent = True  #: send() may run in several threads at once

    def __init__(self, folder: Path, *, date: datetime):
        self.folder = folder
        self.date = date

    def send(self, batch: Batch) -> Outcome:
        (recipient,) = batch.recipients
        try:  # rendered before anything is written: a failure here sent nothing
            email = batch.email_for(recipient)
            data = to_bytes(email, date=self.date, edition_id=batch.edition_id)
        except Exception as exc:  # noqa: BLE001 - any rendering error is this recipient's failure
            return render_failed(exc)
        folder = self.folder / batch.edition_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / eml_name(email.subscriber)
            tmp = path.with_suffix(".eml.tmp")
            # Write then rename: a crash never leaves a half-written .eml looking like a sent one.
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            # Nothing was delivered, so the row is safe to retry.
            return Outcome("retry", error=f"cannot write {folder}: {exc.strerror or exc}")
        return Outcome("accepted", message_id=message_id(email, batch.edition_id))
