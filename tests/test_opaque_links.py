"""Links carry an opaque id, not the address: in every .eml, on the SendGrid path (List-Unsubscribe
headers and substitutions), made once per subscriber in one batch, and resolved by `digest serve`."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner
from public_support import BASE_URL, ENDPOINT, SECRET, client_for, public_config
from send_support import AT, SAMPLE_RECIPIENTS, FakeSendGrid, copy_sample, load, sendgrid_toml

from digest.audience import read_overlay
from digest.cli import main
from digest.config import Config
from digest.store import open_state
from digest.suppressions import STATE_NAME

TOKEN = re.compile(r"token=([^\s<>\"&]+)")


def cli(config: Config, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config.source), *args])
    assert result.exit_code == 0, result.output
    return result.output


def b64_spellings(address: str) -> list[str]:
    """Every way base64url(address) can show inside a longer base64 text: three byte alignments,
    without the characters that depend on the neighbours."""
    out = []
    for shift in range(3):
        encoded = base64.urlsafe_b64encode(b"\0" * shift + address.encode()).decode().rstrip("=")
        start = (shift * 4 + 2) // 3  # characters that hold the padding bytes' bits
        out.append(encoded[start:-2])
    return out


def assert_no_address_in(text: str, address: str) -> None:
    tokens = TOKEN.findall(text)
    assert tokens, "no link with a token"
    for t in tokens:
        assert re.fullmatch(r"v2\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{24}", unquote(t)), t
    for url in re.findall(r"https://\S+", text):
        assert address not in unquote(url)
    for spelling in b64_spellings(address):
        assert spelling not in text, f"base64 of {address} in the email"


def ids_in_state(config: Config) -> dict[str, str]:
    with open_state(config) as state:
        rows = list(state.export_table("token_ids"))  # type: ignore[attr-defined]
    return {token_id: subscriber for token_id, subscriber, _ in rows}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path)


def test_every_link_in_every_built_email_names_an_opaque_id(config: Config) -> None:
    out = config.source.parent / "built"
    cli(config, "build", "--at", AT, "--out", str(out))
    ids = ids_in_state(config)
    emls = sorted(out.glob("*.eml"))
    assert {p.name.removesuffix(".eml") for p in emls} == SAMPLE_RECIPIENTS
    for eml in emls:
        address = eml.name.removesuffix(".eml")
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert_no_address_in(str(msg["List-Unsubscribe"]), address)
        parts = [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
        assert len(parts) == 2  # text and HTML, each with its footer links
        for part in parts:
            assert_no_address_in(part, address)
            named = {unquote(t).split(".")[1] for t in TOKEN.findall(part)}
            assert {ids[i] for i in named} == {address}  # each link names its own subscriber, only them


def test_ids_are_made_once_in_one_batch_and_stay_the_same(config: Config) -> None:
    out = config.source.parent / "built"
    cli(config, "build", "--at", AT, "--subscriber", "ada@example.com", "--out", str(out))
    # the first link of the run made the ids of every active subscriber at once
    assert set(ids_in_state(config).values()) >= SAMPLE_RECIPIENTS
    first = (out / "ada@example.com.eml").read_bytes()
    cli(config, "build", "--at", AT, "--out", str(out))
    assert (out / "ada@example.com.eml").read_bytes() == first
    assert len(ids_in_state(config)) == len(set(ids_in_state(config).values()))


def test_minting_many_ids_is_one_write_transaction(tmp_path: Path) -> None:
    addresses = [f"reader{i}@example.com" for i in range(5000)]
    with open_state(tmp_path) as state:
        statements: list[str] = []
        # every write of a store is one `_write()` transaction, on either engine
        real_write = state._write  # type: ignore[attr-defined]

        def counted() -> object:
            statements.append("BEGIN")
            return real_write()

        state._write = counted  # type: ignore[attr-defined]
        ids = state.token_ids(addresses)
        assert sum(s.startswith("BEGIN") for s in statements) == 1
        assert len(ids) == 5000 and len(set(ids.values())) == 5000
        statements.clear()
        assert state.token_ids(addresses[:10] + ["new@example.com"] + addresses[10:]) == {
            **ids,
            "new@example.com": state.token_ids(["new@example.com"], create=False)["new@example.com"],
        }
        assert sum(s.startswith("BEGIN") for s in statements) == 1  # only the one new id written
        statements.clear()
        state.token_ids(addresses)
        assert not any(s.startswith("BEGIN") for s in statements)  # all known: nothing written
        assert state.token_ids(["nobody@example.com"], create=False) == {}


def test_two_writers_minting_at_once_agree_on_every_id(tmp_path: Path) -> None:
    """A build and a send at the same moment: the first writer's id wins and both return it."""
    addresses = [f"reader{i}@example.com" for i in range(2000)]
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []
    # A timeout on the barrier and the joins: if one writer fails before the barrier, the other
    # must not wait forever (a hung suite reports nothing).
    barrier = threading.Barrier(2, timeout=60)

    def mint() -> None:
        try:
            with open_state(tmp_path) as state:
                barrier.wait(timeout=60)
                results.append(state.token_ids(addresses))
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=mint, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 2 and results[0] == results[1]


def test_check_and_preview_make_no_ids_and_no_state(config: Config) -> None:
    cli(config, "check", "--at", AT)
    result = CliRunner().invoke(
        main,
        ["--config", str(config.source), "preview", "--at", AT, "--get", "/subscribers/ada@example.com/email.html"],
    )
    assert result.exit_code == 0, result.output[-500:]
    assert re.search(r"token=v2\.[A-Za-z0-9_-]{22}\.", result.output)  # looks as it will be sent
    assert not (config.state.path / STATE_NAME).exists()


def test_the_sendgrid_path_carries_opaque_tokens_that_the_app_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    with FakeSendGrid() as fake:
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        config = load(copy_sample(tmp_path, sendgrid_toml(fake.url, one_click=False).replace("[sending]\n", ENDPOINT)))
        cli(config, "send", "--yes", "--at", AT)
        messages = {m.to_email: m for m in fake.messages}
    assert set(messages) == SAMPLE_RECIPIENTS
    client = client_for(config)
    for address, message in messages.items():
        header = message.headers["List-Unsubscribe"]
        substituted = [v for v in message.substitutions.values() if "token=" in v]
        assert substituted, "no link among the substitutions"
        assert_no_address_in(header + "\n" + "\n".join(substituted), address)
        # the page the footer's preferences link opens is this subscriber's
        preferences = next(v for v in substituted if "/preferences?" in v)
        page = client.get(_path(preferences))
        assert page.status_code == 200 and address in page.text
    # the one-click POST to ada's header URL unsubscribes ada, and only ada
    (url,) = re.findall(r"<(https://[^>]+)>", messages["ada@example.com"].headers["List-Unsubscribe"])
    assert client.post(_path(url), content=b"List-Unsubscribe=One-Click").status_code == 200
    assert set(read_overlay(config).optouts) == {"ada@example.com"}


def _path(url: str) -> str:
    # a substitution for an attribute is its whole value, quotes included
    parts = urlsplit(url.strip("\"'").replace("&amp;", "&"))
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL
    return f"{parts.path}?{parts.query}"


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")


def test_a_send_reads_link_ids_lease_by_lease_never_the_whole_list(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send reads the opaque ids of the rows it has leased, one read per lease (making those
    missing on a first send), so it never holds the whole list's ids (200 MB at a million
    readers), and every email still names its own reader's id."""
    from digest.store.state_sql import SqlSubscriberState

    readers = [f"reader{n:03d}@example.com" for n in range(130)]
    lines = ["email,name,tags"] + [f"{a},Reader {n},{'python' if n % 2 else ''}" for n, a in enumerate(readers)]
    (config.source.parent / "subscribers" / "subscribers.csv").write_text("\n".join(lines) + "\n")
    reads: list[int] = []
    real = SqlSubscriberState.token_ids

    def counted(self: SqlSubscriberState, subscribers: list[str], *, create: bool = True) -> dict[str, str]:
        reads.append(len(subscribers))
        return real(self, subscribers, create=create)

    monkeypatch.setattr(SqlSubscriberState, "token_ids", counted)
    cli(config, "send", "--yes", "--at", AT)  # the outbox: one reader a request, 50 rows a lease
    assert max(reads) <= 50 < len(readers)  # never the whole list at once
    assert sum(reads) == len(readers) + 1  # each lease's rows once, and the first reader checked first
    ids = ids_in_state(config)
    assert sorted(ids.values()) == readers  # made on this first send, one each
    for eml in (config.source.parent / "outbox").glob("*.eml"):
        address = eml.name.removesuffix(".eml")
        text = eml.read_bytes().decode()
        named = {unquote(t).split(".")[1] for t in TOKEN.findall(text.replace("=\n", "").replace("=3D", "="))}
        assert named and {ids[i] for i in named} == {address}
