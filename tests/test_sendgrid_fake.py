"""The SendGrid fake behaves like SendGrid for the real `sendgrid` client."""

from __future__ import annotations

import copy
import http.client
import json
import math
import select
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Header,
    Mail,
    Personalization,
    Substitution,
    To,
)

try:  # pytest puts tests/ on sys.path unless tests/ becomes a package
    from sendgrid_fake import FakeSendGrid, parse_fault
except ImportError:  # pragma: no cover
    from tests.sendgrid_fake import FakeSendGrid, parse_fault

FAKE_SCRIPT = Path(__file__).with_name("sendgrid_fake_process.py")
NOW = 1_800_000_000  # a fixed clock for send_at rules


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def client_for(url: str, key: str = "SG.test-key", timeout: float = 5.0) -> SendGridAPIClient:
    """A real client pointed at the fake, with a timeout (the library has none by default)."""
    sg = SendGridAPIClient(key, host=url)
    sg.client.timeout = timeout
    return sg


@pytest.fixture
def sg(fake: FakeSendGrid) -> SendGridAPIClient:
    return client_for(fake.url)


def simple_mail(to: str = "alice@example.com", subject: str = "Weekly digest") -> Mail:
    return Mail(
        from_email="news@example.com",
        to_emails=to,
        subject=subject,
        plain_text_content="Hello",
        html_content="<p>Hello</p>",
    )


def body_for(*emails: str) -> dict[str, Any]:
    """A valid raw mail/send body with one personalization per address."""
    return {
        "personalizations": [{"to": [{"email": e}]} for e in emails],
        "from": {"email": "news@example.com"},
        "subject": "Weekly digest",
        "content": [
            {"type": "text/plain", "value": "Hello"},
            {"type": "text/html", "value": "<p>Hello</p>"},
        ],
    }


def errors_of(exc: HTTPError) -> list[dict[str, Any]]:
    return json.loads(exc.body)["errors"]


# --------------------------------------------------------------------------- success and auth


def test_send_returns_202_with_unique_message_id(fake: FakeSendGrid, sg: SendGridAPIClient):
    first = sg.send(simple_mail("alice@example.com"))
    second = sg.send(simple_mail("Bob@Example.com"))

    assert first.status_code == 202 and first.body == b""
    ids = {first.headers["X-Message-Id"], second.headers["X-Message-Id"]}
    assert len(ids) == 2 and all(ids)
    assert fake.delivered_to() == Counter({"alice@example.com": 1, "bob@example.com": 1})
    req = fake.requests[0]
    assert (req.method, req.path) == ("POST", "/v3/mail/send")
    assert req.headers["authorization"] == "Bearer SG.test-key"
    assert req.body["subject"] == "Weekly digest"
    to, subject, _p, message_id, body = fake.messages[0]
    assert (to, subject, message_id) == (
        "alice@example.com",
        "Weekly digest",
        first.headers["X-Message-Id"],
    )
    assert body is fake.accepted[0]


def test_wrong_key_is_401(fake: FakeSendGrid):
    with pytest.raises(UnauthorizedError) as info:
        client_for(fake.url, key="SG.wrong").send(simple_mail())
    assert info.value.status_code == 401
    assert errors_of(info.value) == [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
    assert fake.accepted == []


# --------------------------------------------------------------------------- validation


def _many_personalizations(b: dict[str, Any]) -> None:
    b["personalizations"] = [{"to": [{"email": f"u{i}@example.com"}]} for i in range(1001)]


def _too_many_recipients(b: dict[str, Any]) -> None:
    b["personalizations"][0]["bcc"] = [{"email": f"b{i}@example.com"} for i in range(1000)]


def _duplicate_address(b: dict[str, Any]) -> None:
    b["personalizations"].append({"to": [{"email": "ALICE@example.com"}]})


def _html_first(b: dict[str, Any]) -> None:
    b["content"].reverse()


def _type_twice(b: dict[str, Any]) -> None:
    b["content"].append({"type": "text/html", "value": "<p>again</p>"})


def _eleven_categories(b: dict[str, Any]) -> None:
    b["categories"] = [f"c{i}" for i in range(11)]


def _duplicate_categories(b: dict[str, Any]) -> None:
    b["categories"] = ["digest", "digest"]


def _send_at_too_far(b: dict[str, Any]) -> None:
    b["send_at"] = NOW + 72 * 3600 + 1


def _custom_arg_not_string(b: dict[str, Any]) -> None:
    b["personalizations"][0]["custom_args"] = {"subscriber_id": 42}


def _custom_args_too_big(b: dict[str, Any]) -> None:
    b["custom_args"] = {"blob": "x" * 10_000}


def _sandbox_string(b: dict[str, Any]) -> None:
    b["mail_settings"] = {"sandbox_mode": {"enable": "true"}}


def _bad_address(b: dict[str, Any]) -> None:
    b["personalizations"][0]["to"][0]["email"] = "alice.example.com"


def _no_subject(b: dict[str, Any]) -> None:
    del b["subject"]


def _unknown_batch(b: dict[str, Any]) -> None:
    b["batch_id"] = "nope"


def _header_not_string(b: dict[str, Any]) -> None:
    b["headers"] = {"X-Digest-Week": 47}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_many_personalizations, "personalizations"),
        (_too_many_recipients, "personalizations"),
        (_duplicate_address, "personalizations.1.to"),
        (_html_first, "content"),
        (_type_twice, "content.2.type"),
        (_eleven_categories, "categories"),
        (_duplicate_categories, "categories.1"),
        (_send_at_too_far, "send_at"),
        (_custom_arg_not_string, "personalizations.0.custom_args.subscriber_id"),
        (_custom_args_too_big, "custom_args"),
        (_sandbox_string, "mail_settings.sandbox_mode.enable"),
        (_bad_address, "personalizations.0.to.0.email"),
        (_no_subject, "subject"),
        (_unknown_batch, "batch_id"),
        (_header_not_string, "headers.X-Digest-Week"),
    ],
)
def test_invalid_requests_are_400(
    fake: FakeSendGrid,
    sg: SendGridAPIClient,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
):
    fake.now = lambda: NOW
    body = body_for("alice@example.com")
    mutate(body)
    with pytest.raises(BadRequestsError) as info:
        sg.send(body)
    assert field in [e["field"] for e in errors_of(info.value)]
    assert all(e["help"] is None and e["message"] for e in errors_of(info.value))
    assert fake.accepted == []


def test_subject_per_personalization_and_send_at_within_72h_are_fine(
    fake: FakeSendGrid,
    sg: SendGridAPIClient,
):
    fake.now = lambda: NOW
    body = body_for("alice@example.com", "bob@example.com")
    del body["subject"]
    for p in body["personalizations"]:
        p["subject"] = "Your week"
    body["send_at"] = NOW + 72 * 3600
    assert sg.send(body).status_code == 202
    assert [m.subject for m in fake.messages] == ["Your week", "Your week"]


def test_body_over_limit_is_413(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.max_body_bytes = 4096  # the real limit is 30 MB; the rule is the same
    body = body_for("alice@example.com")
    body["content"][1]["value"] = "x" * 5000
    with pytest.raises(PayloadTooLargeError):
        sg.send(body)
    assert fake.accepted == []


# --------------------------------------------------------------------------- faults


def test_429_carries_reset_header_then_recovers(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.now = lambda: NOW + 0.5
    fake.script(["429:reset=5", "429:noreset"])
    with pytest.raises(TooManyRequestsError) as info:
        sg.send(simple_mail())
    assert info.value.headers["X-RateLimit-Reset"] == str(math.ceil(NOW + 5.5))
    assert errors_of(info.value)[0]["message"]
    with pytest.raises(TooManyRequestsError) as info:
        sg.send(simple_mail())
    assert info.value.headers.get("X-RateLimit-Reset") is None
    assert sg.send(simple_mail()).status_code == 202  # the script is used up
    assert fake.delivered_to()["alice@example.com"] == 1


def test_502_is_the_bare_http_error_500_has_its_class(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.script(["502", "500"])
    with pytest.raises(HTTPError) as info:
        sg.send(simple_mail())
    assert type(info.value) is HTTPError and info.value.status_code == 502
    with pytest.raises(InternalServerError):
        sg.send(simple_mail())
    assert fake.accepted == []


def test_drop_before_is_not_delivered(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.script(["drop_before"])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, URLError)) as info:
        sg.send(simple_mail())
    assert not isinstance(info.value, HTTPError)
    assert fake.accepted == []
    assert fake.requests[0].status is None and fake.requests[0].fault == "drop_before"


def test_drop_after_is_delivered_but_unanswered(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.script(["drop_after"])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, URLError)) as info:
        sg.send(simple_mail())
    assert not isinstance(info.value, HTTPError)
    assert fake.delivered_to() == Counter({"alice@example.com": 1})
    assert fake.requests[0].message_id == fake.messages[0].message_id


def test_slow_answer_times_out_after_acceptance(fake: FakeSendGrid):
    # The fake holds its answer for a minute (stop() at teardown wakes it): a client that did not
    # time out would get the 202 instead of raising. No clock is read.
    fake.script(["slow:60"])
    with pytest.raises(TimeoutError):
        client_for(fake.url, timeout=0.2).send(simple_mail())
    (request,) = fake.requests
    assert request.fault == "slow:60" and request.status is None  # the client gave up before any answer
    assert fake.delivered_to() == Counter({"alice@example.com": 1})


def test_fail_for_refuses_requests_with_that_recipient(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.fail_for("Bad@Example.com", 400)
    with pytest.raises(BadRequestsError):
        sg.send(body_for("alice@example.com", "bad@example.com"))
    with pytest.raises(BadRequestsError):  # permanently
        sg.send(simple_mail("bad@example.com"))
    assert sg.send(simple_mail("alice@example.com")).status_code == 202
    assert fake.delivered_to() == Counter({"alice@example.com": 1})


def test_unknown_script_token_is_rejected_early():
    with pytest.raises(ValueError):
        parse_fault("teapot")
    with pytest.raises(ValueError):
        FakeSendGrid().script(["slow:soon"])


def test_concurrent_sends(fake: FakeSendGrid, sg: SendGridAPIClient):
    ids: list[str] = []

    def send(i: int) -> None:
        ids.append(sg.send(simple_mail(f"user{i}@example.com")).headers["X-Message-Id"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(set(ids)) == 20
    assert sum(fake.delivered_to().values()) == 20


# --------------------------------------------------------------------------- sandbox and rendering


def test_sandbox_mode_answers_200_and_delivers_nothing(fake: FakeSendGrid, sg: SendGridAPIClient):
    body = body_for("alice@example.com")
    body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    response = sg.send(body)
    assert response.status_code == 200
    assert fake.accepted == [] and fake.messages == []
    assert len(fake.requests) == 1


def test_substitutions_and_headers_rendered_per_recipient(
    fake: FakeSendGrid,
    sg: SendGridAPIClient,
):
    mail = Mail(
        from_email="news@example.com",
        subject="Hi -name-, your week",
        plain_text_content="Hello -name-",
        html_content="<p>Hello -name-</p><a href='-unsub-'>unsubscribe</a>",
    )
    mail.header = Header("List-Id", "<weekly.example.com>")
    for name, email in (("Sam", "sam@example.com"), ("O'Brien", "ob@example.com")):
        p = Personalization()
        p.add_to(To(email))
        p.add_substitution(Substitution("-name-", name))
        p.add_substitution(Substitution("-unsub-", f"https://x.example/u/{name}"))
        p.add_header(Header("List-Unsubscribe", f"<https://x.example/u/{name}>"))
        # add_personalization prepends by default (packages.md): append explicitly.
        mail.add_personalization(p, index=len(mail.personalizations))
    assert sg.send(mail).status_code == 202

    sam, obrien = fake.messages
    assert sam.to_email == "sam@example.com" and sam.subject == "Hi Sam, your week"
    assert sam.text == "Hello Sam"
    assert sam.html == "<p>Hello Sam</p><a href='https://x.example/u/Sam'>unsubscribe</a>"
    assert obrien.subject == "Hi O'Brien, your week"
    assert obrien.headers == {
        "List-Id": "<weekly.example.com>",
        "List-Unsubscribe": "<https://x.example/u/O'Brien>",
    }
    assert [c["type"] for c in sam.content] == ["text/plain", "text/html"]


# --------------------------------------------------------------------------- batches


def test_batch_and_cancel_scheduled_send(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.now = lambda: NOW
    created = sg.client.mail.batch.post()
    assert created.status_code == 201
    batch_id = json.loads(created.body)["batch_id"]
    assert sg.client.mail.batch._(batch_id).get().status_code == 200

    later = body_for("later@example.com")
    later.update(batch_id=batch_id, send_at=NOW + 3600)
    now = body_for("now@example.com")
    now["batch_id"] = batch_id  # no send_at: goes out at once, a cancel cannot stop it
    sg.send(later)
    sg.send(now)
    assert fake.delivered_to() == Counter({"later@example.com": 1, "now@example.com": 1})

    cancel = sg.client.user.scheduled_sends.post(request_body={"batch_id": batch_id, "status": "cancel"})
    assert cancel.status_code == 201
    status = sg.client.user.scheduled_sends._(batch_id).get()
    assert json.loads(status.body) == [{"batch_id": batch_id, "status": "cancel"}]
    assert fake.delivered_to() == Counter({"now@example.com": 1})
    assert [m.to_email for m in fake.cancelled] == ["later@example.com"]

    with pytest.raises(BadRequestsError):
        sg.client.user.scheduled_sends.post(request_body={"batch_id": "nope", "status": "cancel"})


# --------------------------------------------------------------------------- suppressions


def test_suppression_endpoints_return_configured_lists(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.suppressions["bounces"] = [
        {"email": "gone@example.com", "created": NOW - 100, "reason": "550", "status": "5.1.1"},
        {"email": "old@example.com", "created": NOW - 10_000, "reason": "550", "status": "5.1.1"},
    ]
    fake.suppressions["unsubscribes"] = [{"email": "bye@example.com", "created": NOW}]
    fake.suppressions["spam_reports"] = [{"email": "angry@example.com", "created": NOW}]
    fake.suppressions["invalid_emails"] = [{"email": "typo@exmaple.com", "created": NOW}]
    fake.group_suppressions[42] = ["left-group@example.com"]

    def get(resp: Any) -> Any:
        assert resp.status_code == 200
        return json.loads(resp.body)

    assert [e["email"] for e in get(sg.client.suppression.bounces.get())] == [
        "gone@example.com",
        "old@example.com",
    ]
    recent = sg.client.suppression.bounces.get(query_params={"start_time": NOW - 1000})
    assert [e["email"] for e in get(recent)] == ["gone@example.com"]
    page = sg.client.suppression.bounces.get(query_params={"limit": 1, "offset": 1})
    assert [e["email"] for e in get(page)] == ["old@example.com"]
    assert get(sg.client.suppression.unsubscribes.get())[0]["email"] == "bye@example.com"
    assert get(sg.client.suppression.spam_reports.get())[0]["email"] == "angry@example.com"
    assert get(sg.client.suppression.invalid_emails.get())[0]["email"] == "typo@exmaple.com"
    assert get(sg.client.asm.groups._(42).suppressions.get()) == ["left-group@example.com"]
    assert get(sg.client.asm.groups._(7).suppressions.get()) == []
    with pytest.raises(UnauthorizedError):
        client_for(fake.url, key="SG.wrong").client.suppression.bounces.get()


def test_drop_suppressed_is_opt_in(fake: FakeSendGrid, sg: SendGridAPIClient):
    fake.suppressions["bounces"] = [{"email": "gone@example.com", "created": NOW}]
    sg.send(body_for("gone@example.com"))
    assert fake.delivered_to()["gone@example.com"] == 1  # default: the tool must filter itself
    fake.drop_suppressed = True
    assert fake.delivered_to()["gone@example.com"] == 0
    assert [m.to_email for m in fake.dropped] == ["gone@example.com"]


# --------------------------------------------------------------------------- process mode


def _start_process(log: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_SCRIPT), "--port", "0", "--log", str(log), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready, "fake did not start"
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    assert line.startswith("READY http://127.0.0.1:"), line
    return proc, line.split()[1]


def test_process_mode_logs_every_accepted_recipient(tmp_path: Path):
    log = tmp_path / "deliveries.jsonl"
    proc, url = _start_process(log, "--script", "drop_after,ok")
    try:
        sg = client_for(url)
        body = body_for("a@example.com", "b@example.com")
        body["personalizations"][0]["custom_args"] = {"subscriber_id": "1"}
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, URLError)):
            sg.send(copy.deepcopy(body))  # accepted, then the connection drops
        response = sg.send(simple_mail("c@example.com"))
        lines = FakeSendGrid.read_log(log)
        assert [line["to"] for line in lines] == ["a@example.com", "b@example.com", "c@example.com"]
        assert lines[0]["custom_args"] == {"subscriber_id": "1"}
        assert lines[0]["personalization_index"] == 0 and lines[1]["personalization_index"] == 1
        assert lines[0]["message_id"] == lines[1]["message_id"]
        assert lines[2]["message_id"] == response.headers["X-Message-Id"]
        assert lines[2]["subject"] == "Weekly digest" and lines[2]["role"] == "to"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
