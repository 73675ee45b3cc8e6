from __future__ import annotations

from pathlib import Path

from conftest import ROOT

from digest.subscribers import is_valid_email, load_subscribers


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_csv():
    result = load_subscribers(ROOT / "subscribers" / "subscribers.csv")
    assert not result.problems
    by_email = {s.email: s for s in result.subscribers}
    chloe = by_email["chloe.dubois@example.net"]
    assert chloe.tags == ("ai", "climate", "robotics") and chloe.name == "Chloé Dubois"
    assert by_email["li.lei@example.com"].tags == ("space", "hardware")  # comma-separated cell
    assert by_email["conor.obrien@example.org"].attributes["company"] == "O'Brien & Sons"
    assert by_email["pat.former@example.com"].status == "unsubscribed"


def test_bad_rows_are_reported_with_line_and_skipped(tmp_path):
    path = write(
        tmp_path,
        "subs.csv",
        "email,name,tags,status\n"
        "a@example.com,A,ai,active\n"
        "not-an-address,B,,active\n"
        "A@Example.com,Dup,,active\n"
        "c@example.com,C,,frozen\n"
        'd@example.com,D,"x; y",\n',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com", "d@example.com"]
    assert result.subscribers[1].tags == ("x", "y") and result.subscribers[1].status == "active"
    lines = {p.line: p.message for p in result.problems}
    assert "invalid email address 'not-an-address'" in lines[3]
    assert "duplicate address A@Example.com (first on line 2)" in lines[4]
    assert "unknown status 'frozen'" in lines[5]
    assert all(str(path) in str(p) for p in result.problems)


def test_json_list_with_preferences_and_active_flag(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[\n  {"email": "a@example.com", "name": "A", "active": true,\n'
        '   "preferences": {"tags": ["AI", "Space"], "categories": ["Science"]}},\n'
        '  {"email": "b@example.com", "active": false},\n'
        '  {"email": "broken", "active": true}\n]\n',
    )
    result = load_subscribers(path)
    a, b = result.subscribers
    assert a.tags == ("AI", "Space") and a.categories == ("Science",) and a.active
    assert b.status == "unsubscribed"
    (problem,) = result.problems
    assert problem.line == 5 and "invalid email" in problem.message


def test_sample_json_reads():
    result = load_subscribers(ROOT / "subscribers" / "subscribers.json")
    assert result.subscribers and not result.problems


def test_email_validation():
    assert is_valid_email("o'brien+news@mail.example.co.uk")
    for bad in ("", "a@b", "a b@example.com", "a@@example.com", "<a@example.com>", "a@-example.com"):
        assert not is_valid_email(bad), bad


def test_a_row_that_is_not_utf8_is_reported_alone(tmp_path):
    path = tmp_path / "subs.csv"
    path.write_bytes(b"email,name\na@example.com,Ann\nb@example.com,Caf\xe9\nc@example.com,Cy\n")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com", "c@example.com"]
    (problem,) = result.problems
    assert problem.line == 3 and "not valid UTF-8" in problem.message
