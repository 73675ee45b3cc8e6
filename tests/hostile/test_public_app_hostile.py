"""The public app (`digest serve`) against a hostile client: webhook bodies too large or too deep,
Host header tricks, trailing-slash redirects, forged, rotated and expired tokens, and floods.

Where the transport matters (a body refused while it arrives, a Host header sent as given), the
app runs under real uvicorn exactly as `digest serve` runs it and the test speaks raw HTTP."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from public_support import (
    BASE_URL,
    SECRET,
    Signer,
    app_for,
    client_for,
    head_of,
    legacy,
    public_config,
    raw_request,
    read_answer,
    real_server,
    token,
    token_id,
)
from send_support import AT_DT
from starlette.requests import Request
from starlette.testclient import TestClient

from digest.audience import read_overlay
from digest.config import Config
from digest.errors import ConfigError
from digest.pipeline import open_run
from digest.store import open_state
from digest.suppressions import STATE_NAME
from digest.tokens import make_token, read_token
from digest.web.guards import SECURITY_HEADERS, RateLimiter, client_key
from digest.web.public import create_public_app, public_settings

NOW = 1_790_000_000
SIG = "X-Twilio-Email-Event-Webhook-Signature"
STAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path)


@pytest.fixture
def signer() -> Signer:
    return Signer()


def assert_security_headers(headers: object) -> None:
    lowered = {k.lower(): v for k, v in dict(headers).items()}  # type: ignore[call-overload]
    for name, value in SECURITY_HEADERS.items():
        assert lowered.get(name.lower()) == value, name


def nothing_recorded(config: Config) -> bool:
    overlay = read_overlay(config)
    return not overlay.optouts and not overlay.preferences


# ---------------------------------------------------------------- webhook bodies


def test_a_signed_body_nested_100000_deep_is_a_400_with_one_line(config: Config, signer: Signer) -> None:
    client = client_for(config, signer, now=lambda: NOW)
    for body in (b"[" * 100_000 + b"]" * 100_000, b'[{"a":' * 50_000 + b"1" + b"}]" * 50_000, b"[" * 100_000):
        answer = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW))
        assert answer.status_code == 400, answer.text[:200]
        (line,) = answer.text.splitlines()
        assert answer.json() == {"error": "JSON nested deeper than 32 levels"}, line
        assert_security_headers(answer.headers)
    assert not (config.state.path / STATE_NAME).exists()


def test_brackets_inside_strings_do_not_count_as_depth(config: Config, signer: Signer) -> None:
    reason = '550 [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ \\" {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'
    events = [{"email": "ada@example.com", "event": "bounce", "reason": reason, "sg_event_id": "e1", "timestamp": 1}]
    body = json.dumps(events).encode()
    answer = client_for(config, signer, now=lambda: NOW).post(
        "/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW)
    )
    assert answer.status_code == 200 and answer.json() == {"received": 1, "new": 1}


def test_a_signed_number_of_5000_digits_is_a_400_not_a_500(config: Config, signer: Signer) -> None:
    """Python refuses to convert integers past 4300 digits with a ValueError (not a JSON error)."""
    body = b'[{"email": "ada@example.com", "event": "bounce", "sg_event_id": "x", "timestamp": ' + b"9" * 5000 + b"}]"
    answer = client_for(config, signer, now=lambda: NOW).post(
        "/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW)
    )
    assert answer.status_code == 400 and answer.json() == {"error": "body is not JSON"}
    assert not (config.state.path / STATE_NAME).exists()


def _webhook_head(signer: Signer, extra: str) -> bytes:
    headers = signer.headers(b"[]")  # any signature: the size is refused before it is checked
    return (
        "POST /webhooks/sendgrid HTTP/1.1\r\n"
        f"Host: {BASE_URL.removeprefix('https://')}\r\n"
        f"{SIG}: {headers[SIG]}\r\n{STAMP}: {headers[STAMP]}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_declared_oversized_body_is_refused_before_any_of_it_arrives(tmp_path: Path, signer: Signer) -> None:
    config = public_config(tmp_path, "[serve]\nwebhook_max_bytes = 4096\n")
    with real_server(app_for(config, signer)) as address, socket.create_connection(address, timeout=10) as conn:
        conn.sendall(_webhook_head(signer, "Content-Length: 100000000\r\n"))  # and not one byte of it
        answer = read_answer(conn)  # a server reading the body first would wait here until the timeout
    status, headers = head_of(answer)
    assert status == 413
    assert answer.split(b"\r\n\r\n", 1)[1] == b'{"error":"request body larger than 4096 bytes"}'
    assert_security_headers(headers)


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(tmp_path: Path, signer: Signer) -> None:
    """No Content-Length: counted while it streams in, answered before the client finishes."""
    config = public_config(tmp_path, "[serve]\nwebhook_max_bytes = 4096\n")
    with real_server(app_for(config, signer)) as address, socket.create_connection(address, timeout=10) as conn:
        conn.sendall(_webhook_head(signer, "Transfer-Encoding: chunked\r\n"))
        for _ in range(3):  # 6 KB sent, the final chunk never: the body has not ended
            conn.sendall(b"800\r\n" + b"[" * 0x800 + b"\r\n")
        answer = read_answer(conn)
    assert head_of(answer)[0] == 413
    assert not (config.state.path / STATE_NAME).exists()


def test_every_json_answer_of_the_webhook_carries_the_security_headers(tmp_path: Path, signer: Signer) -> None:
    config = public_config(tmp_path, "[serve]\nwebhook_max_bytes = 4096\nwebhook_rate_limit = 1\nrate_burst = 4\n")
    no_key = client_for(config).post("/webhooks/sendgrid", content=b"[]")
    assert no_key.status_code == 503
    client = client_for(config, signer, now=lambda: NOW, monotonic=lambda: 0.0)
    answers = [
        client.post("/webhooks/sendgrid", content=b"[]", headers={SIG: "bad", STAMP: str(NOW)}),
        client.post("/webhooks/sendgrid", content=b"{}", headers=signer.headers(b"{}", NOW)),
        client.post("/webhooks/sendgrid", content=b"[" * 5000, headers=signer.headers(b"[" * 5000, NOW)),
        client.post("/webhooks/sendgrid", content=b"[" * 50, headers=signer.headers(b"[" * 50, NOW)),
        client.post("/webhooks/sendgrid", content=b"[]", headers=signer.headers(b"[]", NOW)),
    ]
    assert [a.status_code for a in [no_key, *answers]] == [503, 401, 400, 413, 400, 429]
    for answer in (no_key, *answers):
        assert answer.headers["content-type"] == "application/json"
        assert_security_headers(answer.headers)


def test_a_webhook_flood_is_refused_before_its_signature_is_checked(tmp_path: Path, signer: Signer) -> None:
    config = public_config(tmp_path, "[serve]\nwebhook_rate_limit = 6\nrate_burst = 3\n")
    clock = [100.0]
    client = client_for(config, signer, now=lambda: NOW, monotonic=lambda: clock[0])
    garbage = {SIG: "not-a-signature", STAMP: str(NOW)}
    codes = [client.post("/webhooks/sendgrid", content=b"[]", headers=garbage).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    refused = client.post("/webhooks/sendgrid", content=b"[]", headers=garbage)
    assert refused.headers["retry-after"] == "10" and refused.json() == {"error": "too many requests"}
    clock[0] += 10  # 6 a minute: one more after 10 seconds
    assert client.post("/webhooks/sendgrid", content=b"[]", headers=signer.headers(b"[]", NOW)).status_code == 200


# ---------------------------------------------------------------- Host header and redirects


@pytest.mark.parametrize(
    "host", ["evil.example", "news.example.com.evil.example", "evil.example:443", "127.0.0.2", "news-example.com"]
)
def test_an_unknown_host_gets_400_and_nothing_happens(config: Config, host: str) -> None:
    client = client_for(config)
    t = token(config, "ada@example.com")
    for method, path in (("GET", "/unsubscribe"), ("POST", "/unsubscribe"), ("GET", "/preferences")):
        answer = client.request(
            method, f"{path}?token={t}", headers={"Host": host}, content=b"List-Unsubscribe=One-Click"
        )
        assert answer.status_code == 400 and "location" not in answer.headers
        assert t not in answer.text
        assert_security_headers(answer.headers)
    assert nothing_recorded(config)
    assert client.get(f"/unsubscribe?token={t}", headers={"Host": "news.example.com:443"}).status_code == 200
    assert client.get(f"/unsubscribe?token={t}", headers={"Host": "NEWS.Example.COM"}).status_code == 200


def test_no_www_redirect_carries_the_token_to_another_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's own www redirect would send news.example.com/... to www.news.example.com/...?token."""
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, '[serve]\ntrusted_hosts = ["www.news.example.com"]\n')
    t = token(config, "ada@example.com", "preferences")
    answer = client_for(config).get(f"/preferences?token={t}", headers={"Host": "news.example.com"})
    assert answer.status_code == 400 and "location" not in answer.headers


def test_configured_trusted_hosts_replace_the_derived_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, '[serve]\ntrusted_hosts = ["*.example.org"]\n')
    client = client_for(config)
    t = token(config, "ada@example.com")
    assert client.get(f"/unsubscribe?token={t}", headers={"Host": "links.example.org"}).status_code == 200
    assert client.get(f"/unsubscribe?token={t}", headers={"Host": "news.example.com"}).status_code == 400
    assert client.get(f"/unsubscribe?token={t}", headers={"Host": "example.org.evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "bad", ["https://news.example.com", "news.example.com:443", "a*.example.com", "*example.com", ""]
)
def test_a_trusted_host_that_cannot_match_is_a_config_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="serve.trusted_hosts entry"):
        public_config(tmp_path, f'[serve]\ntrusted_hosts = ["{bad}"]\n')


@pytest.mark.parametrize("path", ["/preferences/", "/unsubscribe/", "/webhooks/sendgrid/"])
def test_a_trailing_slash_is_a_404_never_a_redirect_with_the_token(config: Config, path: str) -> None:
    client = client_for(config)
    t = token(config, "ada@example.com", "preferences" if "pref" in path else "unsubscribe")
    for method in ("GET", "POST"):
        answer = client.request(method, f"{path}?token={t}", follow_redirects=False, content=b"action=unsubscribe")
        assert answer.status_code in (404, 405) and "location" not in answer.headers
        assert t not in answer.text
    assert nothing_recorded(config)


def test_over_real_http_a_forged_host_and_a_slash_get_no_redirect(config: Config) -> None:
    """What the issue found: `GET /preferences/` with `Host: evil` answered 307 to http://evil/...?token."""
    t = token(config, "ada@example.com", "preferences")
    with real_server(app_for(config)) as address:
        evil = raw_request(address, f"GET /preferences/?token={t} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
        ours = raw_request(address, f"GET /preferences/?token={t} HTTP/1.1\r\nHost: news.example.com\r\n\r\n".encode())
        no_host = raw_request(address, f"GET /preferences?token={t} HTTP/1.0\r\n\r\n".encode())
        page = raw_request(address, f"GET /preferences?token={t} HTTP/1.1\r\nHost: news.example.com\r\n\r\n".encode())
    for answer, expected in ((evil, 400), (ours, 404), (no_host, 400), (page, 200)):
        status, headers = head_of(answer)
        assert status == expected, answer[:300]
        assert "location" not in headers
        assert_security_headers(headers)
    assert t.encode() not in evil and t.encode() not in ours and b"evil.example" not in evil


# ---------------------------------------------------------------- tokens: rotated, expired, replaced state


def test_a_rotated_secret_still_verifies_while_it_is_listed_as_previous(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = "the-old-secret-0123456789", "the-new-secret-9876543210"
    before = token(config, "ada@example.com", secret=old)  # in inboxes since before the rotation
    before_legacy = legacy("grace@example.org", secret=old)
    monkeypatch.setenv("DIGEST_SECRET", new)
    monkeypatch.setenv("DIGEST_SECRET_PREVIOUS", f"  first-retired-secret-000\n{old} ")
    client = client_for_settings(config)
    assert client.get(f"/unsubscribe?token={before}").status_code == 200
    assert client.get(f"/unsubscribe?token={before_legacy}").status_code == 200
    assert client.post(f"/unsubscribe?token={before}", content=b"List-Unsubscribe=One-Click").status_code == 200
    assert read_overlay(config).optouts.keys() == {"ada@example.com"}
    # a forger's secret is not a previous one; and once the old one is dropped, its links stop
    assert client.get(f"/unsubscribe?token={token(config, 'ada@example.com', secret='x' * 24)}").status_code == 403
    monkeypatch.delenv("DIGEST_SECRET_PREVIOUS")
    assert client_for_settings(config).get(f"/unsubscribe?token={before}").status_code == 403


def client_for_settings(config: Config) -> TestClient:
    """The app with the settings `digest serve` reads from the environment."""
    return TestClient(create_public_app(public_settings(config)), base_url=BASE_URL)


def test_new_links_are_signed_with_the_current_secret_only(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "the-new-secret-9876543210")
    monkeypatch.setenv("DIGEST_SECRET_PREVIOUS", "the-old-secret-0123456789")
    run = open_run(config, AT_DT)
    (ada,) = run.subscribers_for(["ada@example.com"])
    t = run.unsubscribe_url(ada).split("token=", 1)[1]
    claim = read_token(t, [b"the-new-secret-9876543210"], "unsubscribe")
    assert claim is not None and claim.kind == "id" and not claim.rotated
    assert read_token(t, [b"the-old-secret-0123456789"], "unsubscribe") is None


@pytest.mark.parametrize("value", ["short", "a-long-enough-secret-000 short", "spaces inside a secret are split"])
def test_a_previous_secret_that_is_too_short_is_one_line_without_the_value(
    config: Config, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_PREVIOUS", value)
    with pytest.raises(ConfigError, match="DIGEST_SECRET_PREVIOUS must hold whitespace-separated secrets") as info:
        public_settings(config)
    assert "short" not in str(info.value) and "inside" not in str(info.value)


def test_address_links_work_until_the_transition_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, "[serve]\nlegacy_token_days = 30\n")
    old = legacy("ada@example.com")
    clock = [1_800_000_000.0]
    client = client_for(config, now=lambda: clock[0])
    # Nothing has been sent with opaque ids yet: address links are the only ones in inboxes.
    clock[0] += 400 * 86400
    assert client.get(f"/unsubscribe?token={old}").status_code == 200
    token_id(config, "grace@example.org")  # the first send since the upgrade makes ids: the clock starts
    with open_state(config) as state:
        first = state.first_token_id_at()
    assert first is not None
    clock[0] = first.timestamp() + 29 * 86400
    assert client.get(f"/preferences?token={legacy('ada@example.com', 'preferences')}").status_code == 200
    clock[0] = first.timestamp() + 30 * 86400 + 1
    expired = client.get(f"/unsubscribe?token={old}")
    assert expired.status_code == 403 and "expired" in expired.text and "ada@example.com" not in expired.text
    assert client.post(f"/unsubscribe?token={old}", content=b"List-Unsubscribe=One-Click").status_code == 403
    assert nothing_recorded(config)
    # the opaque links of the same subscriber never expire
    assert client.get(f"/unsubscribe?token={token(config, 'ada@example.com')}").status_code == 200


def test_with_no_transition_address_links_are_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, "[serve]\nlegacy_token_days = 0\n")
    answer = client_for(config).post(f"/unsubscribe?token={legacy('ada@example.com')}", content=b"x")
    assert answer.status_code == 403 and "expired" in answer.text
    assert not (config.state.path / STATE_NAME).exists()


def test_a_signed_id_the_state_does_not_hold_is_refused(config: Config) -> None:
    """A state replaced by an older copy (or deleted) no longer knows ids minted since."""
    foreign = make_token("AAAAAAAAAAAAAAAAAAAAAA", SECRET.encode(), "unsubscribe")
    client = client_for(config)
    assert client.post(f"/unsubscribe?token={foreign}", content=b"List-Unsubscribe=One-Click").status_code == 403
    token_id(config, "ada@example.com")  # a state now exists, without that id
    assert client.get(f"/unsubscribe?token={foreign}").status_code == 403
    assert nothing_recorded(config)


# ---------------------------------------------------------------- floods


def test_a_post_flood_from_one_client_gets_429_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, "[serve]\nrate_limit = 30\nrate_burst = 5\n")
    clock = [0.0]
    client = client_for(config, monotonic=lambda: clock[0])
    pref = token(config, "grace@example.org", "preferences")
    forged = "v2.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA"
    codes = [client.post(f"/preferences?token={pref}", data={"action": "pause"}).status_code for _ in range(3)]
    codes += [client.post(f"/unsubscribe?token={forged}", content=b"x").status_code for _ in range(2)]
    assert codes == [200, 200, 200, 403, 403]  # forged or not, each POST counts
    refused = client.post(f"/unsubscribe?token={token(config, 'ada@example.com')}", content=b"x")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    assert "Too many requests" in refused.text
    assert_security_headers(refused.headers)
    assert "ada@example.com" not in read_overlay(config).optouts  # refused means not recorded
    assert client.get(f"/unsubscribe?token={token(config, 'ada@example.com')}").status_code == 200  # GETs not limited
    clock[0] += 2  # 30 a minute: one every 2 seconds
    assert client.post(f"/unsubscribe?token={token(config, 'ada@example.com')}", content=b"x").status_code == 200
    assert client.post(f"/unsubscribe?token={token(config, 'ada@example.com')}", content=b"x").status_code == 429


def _serve(config: Config, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config.source), "serve", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "DIGEST_SECRET": SECRET, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # until the server says where it listens
        lines.append(line)
        if "serving" in line:
            break
    found = re.search(r"http://127\.0\.0\.1:\d+", "".join(lines))
    assert found, lines
    return proc, found.group(0)


def _posts(url: str, t: str, forwarded_for: str, n: int) -> list[int]:
    headers = {"Host": "news.example.com", "X-Forwarded-For": forwarded_for}
    return [httpx.post(f"{url}/unsubscribe?token={t}", content=b"x", headers=headers).status_code for _ in range(n)]


@pytest.mark.slow  # a real digest serve process
@pytest.mark.parametrize("trusted", [True, False])
def test_digest_serve_counts_clients_as_its_proxy_setting_says(tmp_path: Path, trusted: bool) -> None:
    """Behind the reverse proxy (a trusted peer) each X-Forwarded-For client has its own bucket;
    from anyone else X-Forwarded-For is ignored, so forging it cannot dodge the limit."""
    config = public_config(tmp_path, "[serve]\nrate_limit = 1\nrate_burst = 2\n")
    t = token(config, "ada@example.com")
    env = {} if trusted else {"FORWARDED_ALLOW_IPS": "10.9.9.9"}
    proc, url = _serve(config, env)
    try:
        first = _posts(url, t, "203.0.113.7", 3)
        second = _posts(url, t, "198.51.100.20", 2)
        # the client at 203.0.113.7 sends its own X-Forwarded-For; the proxy appends the real address
        spoofed = _posts(url, t, "192.0.2.99, 203.0.113.7", 1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert first == [200, 200, 429]
    assert second == ([200, 200] if trusted else [429, 429])
    assert spoofed == [429]  # uvicorn takes the last address, the one the trusted proxy appended


def test_each_client_behind_the_proxy_has_its_own_bucket_in_process(tmp_path: Path) -> None:
    """The same as above through real uvicorn in this process (the proxy is 127.0.0.1, trusted by
    default): one client's flood never limits another."""
    config = public_config(tmp_path, "[serve]\nrate_limit = 1\nrate_burst = 2\n")
    t = token(config, "ada@example.com")
    with real_server(app_for(config)) as (host, port):
        url = f"http://{host}:{port}"
        first = _posts(url, t, "203.0.113.7", 3)
        second = _posts(url, t, "198.51.100.20", 2)
    assert (first, second) == ([200, 200, 429], [200, 200])


def _request_from(host: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [], "client": (host, 5000)})


def test_many_client_addresses_cannot_grow_the_limiter_without_bound() -> None:
    limiter = RateLimiter(60, 2, clock=lambda: 0.0, max_clients=100)
    for n in range(5000):  # a botnet, or one IPv4 client behind a pool of proxies
        assert limiter.take(f"198.51.{n // 256}.{n % 256}") == 0.0
    assert len(limiter._buckets) == 100
    assert limiter.take("198.51.19.135") == 0.0 and limiter.take("198.51.19.135") > 0  # remembered: burst spent
    # the first one was forgotten: it starts again with a full bucket (the documented price of the cap)
    assert limiter.take("198.51.0.0") == 0.0 and limiter.take("198.51.0.0") == 0.0


def test_an_ipv6_client_counts_per_64_and_a_mapped_ipv4_as_itself() -> None:
    same = {client_key(_request_from(h)) for h in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::abcd")}
    assert same == {"2001:db8:1:2::/64"}
    assert client_key(_request_from("2001:db8:1:3::1")) == "2001:db8:1:3::/64"
    assert client_key(_request_from("::ffff:203.0.113.7")) == client_key(_request_from("203.0.113.7")) == "203.0.113.7"
