"""The security properties at unit level (issue 20); tests/test_security_end_to_end.py checks the
same properties through real `digest build` and `digest serve` processes.

- token purpose: a token verifies for the purpose it was made for and no other, whatever the id
  and whichever of the current and previous secrets made it (current and address tokens alike);
- webhook signatures: `verify_signature` accepts SendGrid's signature of exactly this timestamp
  and body under this key, nothing else; the view refuses a missing header and a timestamp too
  far from now in either direction;
- GET safety: no GET or HEAD, with any query, writes to the subscriber state.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from public_support import SECRET, Signer, client_for, public_config, token

from digest.config import Config
from digest.suppressions import STATE_NAME
from digest.tokens import make_legacy_token, make_token, read_token
from digest.transports.sendgrid.webhook import verify_signature

PURPOSES = ("unsubscribe", "preferences")
ids = st.binary(min_size=16, max_size=16).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode())
secrets_st = st.lists(st.binary(min_size=16, max_size=40), min_size=2, max_size=4, unique=True)


# ------------------------------------------------------------------------------ token purpose


@settings(max_examples=300, deadline=None)
@given(token_id=ids, keys=secrets_st, made_for=st.sampled_from(PURPOSES), which=st.integers(0, 3))
def test_a_token_verifies_for_its_own_purpose_only(token_id: str, keys: list[bytes], made_for: str, which: int) -> None:
    signer = keys[which % len(keys)]
    t = make_token(token_id, signer, made_for)
    other = next(p for p in PURPOSES if p != made_for)
    claim = read_token(t, keys, made_for)
    assert claim is not None and claim.kind == "id" and claim.value == token_id
    assert claim.rotated == (keys.index(signer) > 0)
    assert read_token(t, keys, other) is None
    assert read_token(t, [k for k in keys if k != signer], made_for) is None
    assert read_token(t, keys, "admin") is None


@settings(max_examples=200, deadline=None)
@given(local=st.from_regex(r"[a-z0-9.+'-]{1,20}", fullmatch=True), keys=secrets_st, made_for=st.sampled_from(PURPOSES))
def test_an_address_token_verifies_for_its_own_purpose_only(local: str, keys: list[bytes], made_for: str) -> None:
    address = f"{local}@example.com"
    t = make_legacy_token(address, keys[0], made_for)
    other = next(p for p in PURPOSES if p != made_for)
    claim = read_token(t, keys, made_for)
    assert claim is not None and claim.kind == "address" and claim.value == address and not claim.rotated
    assert read_token(t, keys, other) is None
    assert read_token(t, keys[1:], made_for) is None


def test_the_two_purposes_never_share_a_mac() -> None:
    t_unsub = make_token("A" * 22, b"s" * 32, "unsubscribe")
    t_prefs = make_token("A" * 22, b"s" * 32, "preferences")
    assert t_unsub.split(".")[:2] == t_prefs.split(".")[:2] and t_unsub != t_prefs


# ------------------------------------------------------------------------------ webhook signatures

NOW = 1_790_000_000


def test_verify_signature_accepts_exactly_the_signed_timestamp_body_and_key() -> None:
    signer = Signer()
    body = json.dumps([{"email": "a@example.com", "event": "bounce"}]).encode()
    headers = signer.headers(body, NOW)
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    assert verify_signature(signer.key, body, signature, str(NOW))
    assert not verify_signature(signer.key, body + b" ", signature, str(NOW))  # tampered body
    assert not verify_signature(signer.key, body, signature, str(NOW + 1))  # moved timestamp
    assert not verify_signature(Signer().key, body, signature, str(NOW))  # another key
    other = Signer().headers(body, NOW)["X-Twilio-Email-Event-Webhook-Signature"]
    assert not verify_signature(signer.key, body, other, str(NOW))  # another signer's signature
    for garbage in ("", "not base64!!", base64.b64encode(b"x" * 70).decode(), signature[:-4]):
        assert not verify_signature(signer.key, body, garbage, str(NOW))
    assert not verify_signature(signer.key, b"\xff\xfe", signature, str(NOW))  # not UTF-8: never raises


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path)


@pytest.mark.parametrize("missing", ["signature", "timestamp", "both"])
def test_a_webhook_request_missing_a_header_is_refused(config: Config, missing: str) -> None:
    signer = Signer()
    client = client_for(config, signer, now=lambda: NOW)
    body = json.dumps([{"email": "a@example.com", "event": "spamreport", "sg_event_id": "x"}]).encode()
    headers = signer.headers(body, NOW)
    if missing in ("signature", "both"):
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    if missing in ("timestamp", "both"):
        del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 401
    assert not (config.state.path / STATE_NAME).exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forged=st.one_of(st.binary(min_size=1, max_size=80).map(lambda b: base64.b64encode(b).decode()), st.text()))
def test_a_present_but_wrong_signature_is_refused_and_writes_nothing(config: Config, forged: str) -> None:
    signer = Signer()
    client = client_for(config, signer, now=lambda: NOW)
    body = json.dumps([{"email": "a@example.com", "event": "spamreport", "sg_event_id": "x"}]).encode()
    for signature in (forged, Signer().headers(body, NOW)["X-Twilio-Email-Event-Webhook-Signature"]):
        headers = {**signer.headers(body, NOW), "X-Twilio-Email-Event-Webhook-Signature": signature}
        try:
            answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
        except UnicodeEncodeError:
            continue  # not a header value anyone can send
        assert answer.status_code == 401
    assert not (config.state.path / STATE_NAME).exists()


@pytest.mark.parametrize("offset", [-1, 1])
def test_a_signed_timestamp_too_far_from_now_either_way_is_refused(config: Config, offset: int) -> None:
    signer = Signer()
    client = client_for(config, signer, now=lambda: NOW)
    body = json.dumps([{"email": "a@example.com", "event": "spamreport", "sg_event_id": "x"}]).encode()
    limit = config.sendgrid.webhook_max_age
    far = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW + offset * (limit + 1)))
    assert far.status_code == 401 and "stale" in far.text
    assert not (config.state.path / STATE_NAME).exists()
    edge = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW + offset * limit))
    assert edge.status_code == 200


# ------------------------------------------------------------------------------ GET safety


def dump(config: Config) -> list[str]:
    conn = sqlite3.connect(f"file:{config.state.path / STATE_NAME}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/unsubscribe", "/preferences", "/webhooks/sendgrid", "/unsubscribe/", "/"]),
    purpose=st.sampled_from(PURPOSES),
    who=st.sampled_from(["ada@example.com", "grace@example.org"]),
    extra=st.dictionaries(
        st.sampled_from(["action", "List-Unsubscribe", "via", "tags", "email", "status", "token"]),
        st.sampled_from(["unsubscribe", "One-Click", "page", "pause", "save", "space", "ada@example.com", ""]),
        max_size=3,
    ),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_no_get_or_head_with_any_query_writes_anything(config, path, purpose, who, extra, method) -> None:
    t = token(config, who, purpose)  # makes the state with the link ids, as a send does
    before = dump(config)
    client = client_for(config)
    answer = client.request(method, path, params={"token": t, **extra})
    assert answer.status_code in (200, 400, 403, 404, 405)
    assert dump(config) == before


# ------------------------------------------------------------------------------ tokens in inboxes

GOLDEN_SECRET = b"golden-vector-secret-0123456789"


def test_links_already_in_inboxes_keep_verifying() -> None:
    """Tokens made by this version, spelt out: a change to how a MAC is computed would break every
    link already sent (current and pre-opaque address links alike)."""
    vectors = {
        ("v2.AAAAAAAAAAAAAAAAAAAAAA.7TrM4Yed3RsrsaYdbQzhI7Lo", "unsubscribe"): ("id", "AAAAAAAAAAAAAAAAAAAAAA"),
        ("v2.AAAAAAAAAAAAAAAAAAAAAA.WyXot6sDbFQHyi--kyRrRYvO", "preferences"): ("id", "AAAAAAAAAAAAAAAAAAAAAA"),
        ("YWRhQGV4YW1wbGUuY29t.JKs64hmFqa9jr0hzRcOGpT8f", "unsubscribe"): ("address", "ada@example.com"),
        ("YWRhQGV4YW1wbGUuY29t.Jgwi7Xk6f5ZeAwm5QFQExYaL", "preferences"): ("address", "ada@example.com"),
    }
    for (t, purpose), (kind, value) in vectors.items():
        claim = read_token(t, [GOLDEN_SECRET], purpose)
        assert claim is not None and (claim.kind, claim.value) == (kind, value), t
    assert make_token("A" * 22, GOLDEN_SECRET) == "v2.AAAAAAAAAAAAAAAAAAAAAA.7TrM4Yed3RsrsaYdbQzhI7Lo"
    assert make_legacy_token("ada@example.com", GOLDEN_SECRET) == "YWRhQGV4YW1wbGUuY29t.JKs64hmFqa9jr0hzRcOGpT8f"
    # the purpose a caller leaves out is unsubscribe, the one-click link's
    assert read_token("v2.AAAAAAAAAAAAAAAAAAAAAA.7TrM4Yed3RsrsaYdbQzhI7Lo", [GOLDEN_SECRET]) is not None
    assert read_token("v2.AAAAAAAAAAAAAAAAAAAAAA.WyXot6sDbFQHyi--kyRrRYvO", [GOLDEN_SECRET]) is None


def _flip_spare_bits(text: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    assert base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == base64.urlsafe_b64decode(
        text + "=" * (-len(text) % 4)
    )
    return other


def test_an_address_link_spelt_other_than_we_spell_it_is_refused() -> None:
    """Either half with spare bits flipped decodes to the same bytes, but only our spelling counts
    (a lenient reading would let altered text through, to be reflected into a page)."""
    payload, mac = make_legacy_token("ada@example.co", GOLDEN_SECRET).split(".")
    assert len(payload) % 4  # 14 bytes: the last character carries spare bits
    assert read_token(f"{payload}.{mac}", [GOLDEN_SECRET]) is not None
    assert read_token(f"{_flip_spare_bits(payload)}.{mac}", [GOLDEN_SECRET]) is None
    assert read_token(f"{payload}.{mac}A", [GOLDEN_SECRET]) is None


@settings(max_examples=100, deadline=None)
@given(keys=secrets_st, which=st.integers(0, 3))
def test_an_address_link_says_whether_a_previous_secret_signed_it(keys: list[bytes], which: int) -> None:
    signer = keys[which % len(keys)]
    claim = read_token(make_legacy_token("ada@example.com", signer), keys)
    assert claim is not None and claim.rotated == (keys.index(signer) > 0)


def test_secrets_must_be_long_enough_and_the_error_says_which_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.errors import ConfigError
    from digest.tokens import MIN_SECRET_CHARS, previous_secrets_from_env, secret_from_env

    exactly = "s" * MIN_SECRET_CHARS
    monkeypatch.setenv("MY_SECRET", exactly)
    monkeypatch.setenv("MY_OLD_SECRETS", f"{exactly} {'t' * 40}")
    assert secret_from_env("MY_SECRET") == exactly.encode()
    assert previous_secrets_from_env("MY_OLD_SECRETS") == (exactly.encode(), b"t" * 40)
    assert previous_secrets_from_env("") == ()  # none configured
    monkeypatch.setenv("MY_SECRET", exactly[1:])
    monkeypatch.setenv("MY_OLD_SECRETS", exactly[1:])
    with pytest.raises(ConfigError) as info:
        secret_from_env("MY_SECRET")
    assert str(info.value) == (
        f"environment variable MY_SECRET must hold a secret of at least {MIN_SECRET_CHARS} characters "
        "(needed to sign unsubscribe links)"
    )
    with pytest.raises(
        ConfigError, match=f"MY_OLD_SECRETS must hold whitespace-separated secrets of at least {MIN_SECRET_CHARS}"
    ):
        previous_secrets_from_env("MY_OLD_SECRETS")
    monkeypatch.delenv("MY_SECRET")
    with pytest.raises(ConfigError, match="MY_SECRET must hold a secret"):
        secret_from_env("MY_SECRET")


def test_a_token_is_only_ever_made_for_an_opaque_id() -> None:
    """An address, an id of another length or one spelt other than we spell it is a programming
    error, never a token (a link must not carry the address)."""
    good = "A" * 22
    assert make_token(good, GOLDEN_SECRET).startswith("v2.")
    for bad in ("ada@example.com", "A" * 16, _flip_spare_bits(good)):
        with pytest.raises(AssertionError):
            make_token(bad, GOLDEN_SECRET)


def _signed(key: bytes, prefix: bytes, payload: bytes) -> str:
    """base64url of an 18-byte HMAC-SHA256, as the token formats write their MACs."""
    import hashlib
    import hmac

    return base64.urlsafe_b64encode(hmac.new(key, prefix + payload, hashlib.sha256).digest()[:18]).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_click_link_is_read_only_as_we_spell_and_sign_it() -> None:
    """A first-party click link (`/r/<token>`) names an edition and an article; only our spelling,
    our MAC and exactly those two parts are accepted, under the current or a previous secret."""
    from digest.tokens import make_link_token, read_link_token

    old, new = GOLDEN_SECRET, b"the-current-secret-0123456789"
    good = make_link_token("2026-W49", "robot", old)
    link = b"l1\x00link\x00"  # what a click link's MAC starts with
    # the format in inboxes, built here independently: l1.<edition NUL article>.<MAC>
    assert (
        good == f"l1.{_b64(b'2026-W49' + bytes(1) + b'robot')}.{_signed(old, link, b'2026-W49' + bytes(1) + b'robot')}"
    )
    assert read_link_token(good, [new, old]) == ("2026-W49", "robot")  # signed before a rotation
    assert read_link_token(good, [new]) is None
    _, payload, mac = good.split(".")
    assert len(payload) % 4  # the last character carries spare bits
    assert read_link_token(f"l1.{_flip_spare_bits(payload)}.{mac}", [old]) is None
    assert read_link_token(f"l1.{payload}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}", [old]) is None  # tampered
    assert read_link_token(f"l2.{payload}.{mac}", [old]) is None
    # correctly signed, but not one edition and one article: refused, never half-read
    for bad in (b"2026-W49", b"2026-W49\x00robot\x00extra", b"\xff\xfe\x00robot"):
        forged = f"l1.{_b64(bad)}.{_signed(old, link, bad)}"
        assert read_link_token(forged, [old]) is None, bad
    # and the MAC input is what the format says: the same bytes signed as above read back
    ok = b"2026-W49\x00robot"
    assert read_link_token(f"l1.{_b64(ok)}.{_signed(old, link, ok)}", [old]) == ("2026-W49", "robot")


def test_an_address_link_whose_address_is_not_utf8_is_refused_even_when_signed() -> None:
    payload, unsubscribe = b"\xffada@example.com", b"unsubscribe\x00"
    forged = f"{_b64(payload)}.{_signed(GOLDEN_SECRET, unsubscribe, payload)}"
    assert read_token(forged, [GOLDEN_SECRET]) is None
    well_formed = b"ada@example.com"  # the same construction with UTF-8 is accepted: the test is live
    signed = f"{_b64(well_formed)}.{_signed(GOLDEN_SECRET, unsubscribe, well_formed)}"
    claim = read_token(signed, [GOLDEN_SECRET])
    assert claim is not None and (claim.kind, claim.value) == ("address", "ada@example.com")
