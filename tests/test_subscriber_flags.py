"""Subscription flags and statuses, in CSV and JSON: every common spelling read exactly, anything
that looks like one but is not understood refused (the row is not mailed), an opt-out always wins."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.models import Subscriber
from digest.subscribers import load_subscribers, write_list


def csv_list(tmp_path: Path, header: str, *rows: str) -> Path:
    path = tmp_path / "subs.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def json_list(tmp_path: Path, *items: dict) -> Path:
    path = tmp_path / "subs.json"
    path.write_text(json.dumps(list(items), indent=2), encoding="utf-8")
    return path


# (field, value as written, active?)
SPELLINGS = [
    ("active", "false", False),
    ("active", "true", True),
    ("isActive", "false", False),
    ("isActive", "FALSE", False),
    ("is_active", "no", False),
    ("is_active", "yes", True),
    ("Is Active", "0", False),
    ("subscribed", "n", False),
    ("subscribed", "1", True),
    ("unsubscribed", "true", False),
    ("unsubscribed", "yes", False),
    ("unsubscribed", "0", True),
    ("status", "unsubscribed", False),
    ("status", "Cleaned", False),
    ("status", "pending", False),
    ("status", "bounced", False),
    ("status", "opted-out", False),
    ("status", "subscribed", True),
    ("status", "", True),
    ("unsubscribed_at", "2025-01-02T03:04:05Z", False),
    ("unsubscribedAt", "", True),
]


@pytest.mark.parametrize(("field", "value", "active"), SPELLINGS)
def test_each_spelling_in_csv(tmp_path, field, value, active):
    path = csv_list(tmp_path, f"email,name,{field}", f"a@example.com,Ann,{value}", "b@example.com,Bo,")
    result = load_subscribers(path)
    assert not result.problems
    a, b = result.subscribers
    assert a.active is active, (field, value, a.status)
    assert b.active  # an empty cell says nothing: being on the list is the subscription
    assert field not in a.attributes


JSON_SPELLINGS = [
    ("isActive", False, False),
    ("isActive", True, True),
    ("is_active", 0, False),
    ("active", "no", False),
    ("subscribed", False, False),
    ("unsubscribed", True, False),
    ("unsubscribed", False, True),
    ("status", "cleaned", False),
    ("isActive", None, True),
]


@pytest.mark.parametrize(("field", "value", "active"), JSON_SPELLINGS)
def test_each_spelling_in_json(tmp_path, field, value, active):
    path = json_list(tmp_path, {"email": "a@example.com", field: value})
    result = load_subscribers(path)
    assert not result.problems
    (a,) = result.subscribers
    assert a.active is active
    assert dict(a.attributes) == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [("isActive", "maybe"), ("subscribed", "2"), ("status", "frozen"), ("unsubscribed", "sometimes")],
)
def test_a_flag_value_not_understood_is_an_error_and_the_row_is_not_mailed(tmp_path, field, value):
    path = csv_list(tmp_path, f"email,{field}", f"a@example.com,{value}", "b@example.com,")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["b@example.com"]
    (problem,) = result.problems
    assert problem.line == 2 and problem.severity == "error"
    assert repr(value) in problem.message and "not mailed" in problem.message


@pytest.mark.parametrize(
    "field",
    ["opted_out", "email_disabled", "subscription_status", "deleted_at", "gdpr_consent", "do_not_email", "Newsletter"],
)
def test_a_field_that_looks_like_a_flag_is_refused_never_an_attribute(tmp_path, field):
    path = csv_list(tmp_path, f"email,company,{field}", "a@example.com,Acme,true", "b@example.com,Bolt,")
    result = load_subscribers(path)
    # the row with a value in it is not mailed; the one without is read as usual, without the field
    assert [s.email for s in result.subscribers] == ["b@example.com"]
    assert dict(result.subscribers[0].attributes) == {"company": "Bolt"}
    (problem,) = result.problems
    assert problem.line == 2 and problem.severity == "error"
    assert (
        f"field {field.lower()!r} looks like a subscription flag or status" in problem.message
    )  # CSV headers are read lower-cased


def test_a_flag_nested_in_json_is_refused(tmp_path):
    path = json_list(
        tmp_path,
        {"email": "a@example.com", "preferences": {"categories": ["AI"], "unsubscribed": True}},
        {"email": "b@example.com", "meta": {"subscription": {"status": "cancelled"}}},
        {"email": "c@example.com", "preferences": {"categories": ["AI"], "frequency": "weekly"}},
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["c@example.com"]
    assert [(p.line, p.message.split(" looks like")[0]) for p in result.problems] == [
        (2, "field 'preferences.unsubscribed'"),
        (11, "field 'meta.subscription'"),
    ]


def test_an_opt_out_date_written_as_an_object_counts_and_a_lookalike_holding_one_is_refused(tmp_path):
    # a MongoDB export writes its dates as {"$date": ...}: that there is one is all that counts
    date = {"$date": "2025-06-03T18:57:08Z"}
    path = json_list(
        tmp_path,
        {"email": "a@example.com", "unsubscribedAt": date},
        {"email": "b@example.com", "unsubscribedAt": {}},
        {"email": "c@example.com", "optedOutAt": date},
    )
    result = load_subscribers(path)
    assert [(s.email, s.status) for s in result.subscribers] == [
        ("a@example.com", "unsubscribed"),
        ("b@example.com", "active"),
    ]
    (problem,) = result.problems
    assert problem.severity == "error" and "field 'optedOutAt' looks like a subscription flag" in problem.message


def test_a_flag_holding_an_object_or_a_list_refuses_that_row_and_the_list_goes_on(tmp_path):
    path = json_list(
        tmp_path,
        {"email": "a@example.com", "status": {"code": "active"}},
        {"email": "b@example.com", "isActive": [True]},
        {"email": "c@example.com", "isActive": True},
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["c@example.com"]
    assert [(p.line, p.severity, p.message.split(" (")[0]) for p in result.problems] == [
        (2, "error", "unknown status {'code': 'active'}"),
        (8, "error", "isActive [True] is not a yes/no value"),
    ]
    assert all(p.message.endswith("this row is not mailed") for p in result.problems)


def test_an_opt_out_wins_when_signals_disagree(tmp_path):
    path = csv_list(
        tmp_path,
        "email,status,isActive,unsubscribed",
        "a@example.com,active,false,",
        "b@example.com,subscribed,true,yes",
        "c@example.com,pending,,true",
        "d@example.com,active,true,no",
    )
    result = load_subscribers(path)
    assert [s.status for s in result.subscribers] == ["unsubscribed", "unsubscribed", "unsubscribed", "active"]
    warnings = {p.line: p.message for p in result.problems}
    assert all(p.severity == "warning" for p in result.problems)
    assert sorted(warnings) == [2, 3]  # c: pending and unsubscribed both mean "no mail": no disagreement
    assert "status says active, isactive says unsubscribed" in warnings[2]
    assert "an opt-out always wins" in warnings[2]


def test_a_header_with_a_column_twice_is_not_read(tmp_path):
    path = csv_list(tmp_path, "email,status,name,status", "a@example.com,unsubscribed,Ann,active")
    result = load_subscribers(path)
    assert result.subscribers == ()
    (problem,) = result.problems
    assert problem.line == 1 and "'status' appear more than once" in problem.message


def test_csv_keeps_id_subscription_time_and_cadence(tmp_path):
    path = csv_list(
        tmp_path,
        "email,id,subscribed_at,frequency,company",
        "a@example.com,42,2025-06-03 18:57:08,monthly,Acme",
        "b@example.com,,not a date,,",
        "c@example.com,,,hourly,",
    )
    result = load_subscribers(path)
    a, b = result.subscribers
    assert (a.external_id, a.frequency, dict(a.attributes)) == ("42", "monthly", {"company": "Acme"})
    assert a.subscribed_at == datetime(2025, 6, 3, 18, 57, 8, tzinfo=UTC)
    assert b.subscribed_at is None and b.frequency is None
    problems = {p.line: p for p in result.problems}
    assert problems[3].severity == "warning" and "'not a date' is not a date" in problems[3].message
    assert problems[4].severity == "error" and "frequency 'hourly'" in problems[4].message


def test_subscription_times_are_instants_in_utc_and_the_end_of_time_is_refused(tmp_path):
    path = csv_list(
        tmp_path,
        "email,subscribed_at",
        "a@example.com,2025-06-03T20:57:08+02:00",
        "b@example.com,1749000000000",  # milliseconds, as JavaScript writes them
        "c@example.com,9999-12-31T23:59:59-23:00",  # past the year 9999 in UTC
        "d@example.com,0001-01-01T00:00:00+01:00",  # before the year 1 in UTC
        "e@example.com,20250603",  # eight digits: ISO 8601's basic date, not seconds since 1970
        "f@example.com,2025",  # a year alone is no time (and no Unix time either)
    )
    result = load_subscribers(path)
    a, b, c, d, e, f = result.subscribers
    assert e.subscribed_at == datetime(2025, 6, 3, tzinfo=UTC) and f.subscribed_at is None
    assert a.subscribed_at == datetime(2025, 6, 3, 18, 57, 8, tzinfo=UTC) and a.subscribed_at.tzinfo is UTC
    assert b.subscribed_at == datetime.fromtimestamp(1749000000, UTC)
    assert c.subscribed_at is None and d.subscribed_at is None
    # c's time, kept with its offset, stopped `digest subscribers show` (OverflowError converting it)
    assert [(p.line, p.severity) for p in result.problems] == [(4, "warning"), (5, "warning"), (7, "warning")]


def test_the_list_writer_round_trips_every_field(tmp_path):
    subscribers = [
        Subscriber(
            email="=cmd|'/Ccalc'!A0@example.com",
            name="-Minus +Plus",
            tags=("ai", "@home"),
            categories=("Science", "Space"),
            status="unsubscribed",
            attributes={"company": '=HYPERLINK("http://x")', "phone": "+44 20 7946 0000"},
            external_id="mbgvrk1r15166symjkm",
            subscribed_at=datetime(2025, 6, 3, 18, 57, 8, 415000, tzinfo=UTC),
            frequency="daily",
        ),
        Subscriber(email="plain@example.com", name="Plain"),
    ]
    buffer = io.StringIO()
    write_list(subscribers, buffer)
    path = tmp_path / "out.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    result = load_subscribers(path)
    assert not result.problems
    fields = (
        "email",
        "name",
        "tags",
        "categories",
        "status",
        "attributes",
        "external_id",
        "subscribed_at",
        "frequency",
    )
    for before, after in zip(subscribers, result.subscribers, strict=True):
        assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields]
