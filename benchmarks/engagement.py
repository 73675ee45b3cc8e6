"""After the send, at list scale: storing webhook events, reports, the preview's panel, ranking.

    .venv/bin/python benchmarks/engagement.py [--subscribers 100000] [--editions 8] [--batch 1000]

Builds, in a temp folder, a ledger of N subscribers x E editions (all accepted, with message ids),
each edition's recorded articles, and SendGrid-shaped events for every message (processed and
delivered; opens for 45% of readers, a third of those Apple's machine opens only; clicks for 8%),
then prints:

* storing: events per second into the event store in webhook-sized batches (one transaction each),
  and a signed batch through the public app's webhook (signature check, JSON, opt-out pass, store);
* a repeat of every batch (SendGrid retries): how fast duplicates are refused by the unique key;
* `digest report` for the latest edition, `--per-subscriber`, and the last ten editions;
* the preview panel's data (`report.trend`) and engagement ranking's click histories;
* the state file's size.

Figures are printed, never asserted: no test depends on timing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TAGS = ["AI", "Climate", "Security", "Python", "Space", "Hardware", "Startups", "Health", "Robotics", "Web"]


def took(label: str, started: float, extra: str = "") -> float:
    seconds = time.perf_counter() - started
    print(f"{label:58} {seconds * 1000:10.1f} ms{extra}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--editions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    from digest.config import parse_config
    from digest.events import EditionArticle, EditionRecord, click_histories
    from digest.ledger import ClaimItem
    from digest.report import reports, trend
    from digest.store import open_events
    from digest.store.sqlite_ledger import SqliteLedger
    from digest.suppressions import STATE_NAME
    from digest.transports.sendgrid.webhook import from_sendgrid

    rng = random.Random(18)
    tmp = Path(tempfile.mkdtemp(prefix="digest-engagement-"))
    config = parse_config({"state": {"path": "state"}}, base=tmp)
    state = config.state.path
    start = datetime(2026, 10, 5, 8, tzinfo=UTC)
    subscribers = [f"reader{i:06d}@example.com" for i in range(args.subscribers)]
    editions = [(f"2026-W{41 + e}", start + timedelta(weeks=e)) for e in range(args.editions)]
    print(f"{args.subscribers:,} subscribers x {args.editions} editions in {tmp}")

    t = time.perf_counter()
    with SqliteLedger(state / "ledger.sqlite3") as ledger, open_events(state) as store:
        for edition, at in editions:
            articles = [
                EditionArticle(
                    edition,
                    f"{edition}/a{k}",
                    f"https://blog.example.com/{edition}/a{k}?utm_source=newsletter",
                    f"https://blog.example.com/{edition}/a{k}",
                    f"Article {k}",
                    tuple(rng.sample(TAGS, 2)),
                    (),
                )
                for k in range(20)
            ]
            store.record_edition(EditionRecord(edition, edition, at), articles)
            ids = tuple(f"{edition}/a{k}" for k in range(5))
            items = [ClaimItem(s, s, ids, at) for s in subscribers]
            ledger.claim(edition, "bench", items, transport="sendgrid")
            outcomes = [
                (subscribers[i : i + 1000], "accepted", f"msg{edition}{i // 1000}", "")
                for i in range(0, len(subscribers), 1000)
            ]
            ledger.settle_many(edition, outcomes)  # type: ignore[arg-type]
    took("ledger and edition records (setup)", t)

    def events_for(edition: str, at: datetime) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        stamp = int(at.timestamp())
        for i, s in enumerate(subscribers):
            base = {
                "email": s,
                "edition": edition,
                "subscriber": s,
                "timestamp": stamp,
                "sg_message_id": f"msg{edition}{i // 1000}.filter-{i}",
            }
            out.append({**base, "event": "processed", "sg_event_id": f"p-{edition}-{i}"})
            out.append({**base, "event": "delivered", "sg_event_id": f"d-{edition}-{i}"})
            if rng.random() < 0.45:
                machine = rng.random() < 1 / 3
                out.append({**base, "event": "open", "sg_machine_open": machine, "sg_event_id": f"o-{edition}-{i}"})
            if rng.random() < 0.08:
                for c in range(rng.randint(1, 3)):
                    url = f"https://blog.example.com/{edition}/a{rng.randrange(20)}?utm_source=newsletter"
                    out.append({**base, "event": "click", "url": url, "sg_event_id": f"c-{edition}-{i}-{c}"})
        return out

    every = [events_for(e, at) for e, at in editions]
    total = sum(len(e) for e in every)
    t = time.perf_counter()
    with open_events(state) as store:
        for events in every:
            for i in range(0, len(events), args.batch):
                store.record([e for e in map(from_sendgrid, events[i : i + args.batch]) if e is not None])
    seconds = took(f"store {total:,} events in batches of {args.batch}", t)
    print(f"{'':58} {total / seconds:10,.0f} events/s")
    t = time.perf_counter()
    with open_events(state) as store:
        repeated = sum(
            store.record([e for e in map(from_sendgrid, every[-1][i : i + args.batch]) if e is not None])
            for i in range(0, len(every[-1]), args.batch)
        )
    took(f"repeat the last edition's {len(every[-1]):,} events ({repeated} new)", t)

    webhook(config, every[-1][: args.batch])

    latest = editions[-1][0]
    t = time.perf_counter()
    (one,) = reports(config, latest)
    took(f"digest report --edition {latest}", t, f"  (delivered {one.delivered:,}, clicks {one.clickers:,})")
    t = time.perf_counter()
    reports(config, latest, per_subscriber=True)
    took("digest report --per-subscriber (one edition)", t)
    t = time.perf_counter()
    reports(config)
    took("digest report (last ten editions)", t)
    t = time.perf_counter()
    panel = trend(config)
    took("preview panel data (report.trend, 8 editions)", t, f"  ({len(panel.editions)} editions)")
    t = time.perf_counter()
    with open_events(state) as store:
        histories = click_histories(store, "2026-W99", editions[-1][1] + timedelta(days=7), 8)
    took("engagement ranking: click histories (8 editions)", t, f"  ({len(histories):,} readers clicked)")
    size = (state / STATE_NAME).stat().st_size + sum(p.stat().st_size for p in state.glob(f"{STATE_NAME}-*"))
    print(f"{'state file (subscribers.sqlite3 with WAL)':58} {size / 1e6:10.1f} MB")


def webhook(config: object, events: list[dict[str, object]]) -> None:
    """One signed batch through the public app, as SendGrid posts it."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from starlette.testclient import TestClient

    from digest.transports.sendgrid.webhook import load_webhook_key
    from digest.web.public import PublicSettings, create_public_app

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = load_webhook_key("K", {"K": base64.b64encode(der).decode()})
    now = int(time.time())
    fresh = [{**e, "sg_event_id": f"w-{e['sg_event_id']}", "timestamp": now} for e in events]
    body = json.dumps(fresh).encode()
    signature = base64.b64encode(private.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
        "Content-Type": "application/json",
    }
    app = create_public_app(PublicSettings(config, b"benchmark-secret-0123456789", key))  # type: ignore[arg-type]
    client = TestClient(app, base_url="http://127.0.0.1")
    t = time.perf_counter()
    answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    took(f"one signed webhook batch of {len(events)} ({len(body) / 1e3:.0f} kB)", t)


if __name__ == "__main__":
    main()
