"""Hostile and broken subscriber files: no cell, quote or nesting can crash a run, hide a row or
smuggle a formula into a spreadsheet (issue 11, item 3, the CSV bullets)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.models import Subscriber
from digest.subscribers import load_subscribers, write_list

ROOT = Path(__file__).resolve().parents[2]
AT = "2026-11-30T00:00"
HEADER = "email,name,tags,categories,status,timezone,company"


@pytest.fixture
def newsletter(tmp_path: Path) -> Path:
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "digest.toml", tmp_path / "digest.toml")
    return tmp_path / "digest.toml"


def set_list(config: Path, *rows: str) -> Path:
    path = config.parent / "subscribers" / "subscribers.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def check(config: Path):
    return CliRunner().invoke(main, ["--config", str(config), "check", "--at", AT])


def test_a_one_megabyte_cell_is_one_line_numbered_error(newsletter):
    path = set_list(
        newsletter,
        "a@example.com,Ann,ai,,active,,",
        "b@example.com," + "B" * 1_000_000 + ",ai,,active,,",
        "c@example.com,Cy,ai,,active,,",
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com", "c@example.com"]
    (problem,) = result.problems
    assert problem.line == 3 and "row longer than 65,536 characters" in problem.message

    out = check(newsletter)
    assert "internal error" not in out.output
    assert f"{path}:3: error: row longer than 65,536 characters" in out.output
    assert out.exit_code == 1


def test_an_unbalanced_quote_swallows_no_subscriber(newsletter):
    path = set_list(
        newsletter,
        "a@example.com,Ann,ai,,active,,",
        'b@example.com,"Bob,ai,,active,,',
        "c@example.com,Cy,ai,,active,,",
        "d@example.com,Di,ai,,unsubscribed,,",
        'e@example.com,Ed,ai,,active,,"Quote" Ltd',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com", "c@example.com", "d@example.com", "e@example.com"]
    assert result.subscribers[2].status == "unsubscribed"
    (problem,) = result.problems
    assert problem.line == 3
    assert "unbalanced quote" in problem.message and "runs on into line 4" in problem.message

    out = check(newsletter)
    assert f"{path}:3: error: unbalanced quote" in out.output
    assert out.exit_code == 1


def test_a_quote_left_open_at_the_end_of_the_file_is_an_error(tmp_path):
    path = tmp_path / "subs.csv"
    path.write_text('email,name\na@example.com,Ann\nb@example.com,"Bob\nand some words\n', encoding="utf-8")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert result.problems[0].line == 3 and "unbalanced quote" in result.problems[0].message
    assert "never closed (it runs to the end of the file)" in result.problems[0].message
    # the line it took is read again on its own (and is no subscriber)
    assert result.problems[1].line == 4 and "invalid email address 'and some words'" in result.problems[1].message


def test_a_quoted_cell_with_line_breaks_is_still_one_cell(tmp_path):
    path = tmp_path / "subs.csv"
    path.write_text(
        'email,name,note\na@example.com,Ann,"met at the meetup,\nlikes robots"\nb@example.com,Bo,\n', encoding="utf-8"
    )
    result = load_subscribers(path)
    assert not result.problems
    assert result.subscribers[0].attributes["note"] == "met at the meetup, likes robots"
    assert [s.line for s in result.subscribers] == [2, 4]


def test_lines_that_each_open_a_quote_are_each_read_once(tmp_path):
    # Were a row read again allowed to run on, this file would be read over and over (quadratic).
    path = tmp_path / "subs.csv"
    path.write_text("email,name\n" + "".join(f'"x{i}\n' for i in range(5_000)) + "z@example.com,Zed\n")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["z@example.com"]
    assert all(p.severity == "error" for p in result.problems)


def test_a_json_list_nested_a_hundred_thousand_deep_is_an_error_not_a_crash(newsletter):
    path = newsletter.parent / "subscribers" / "subscribers.json"
    path.write_text(
        '[{"email": "a@example.com"},\n {"email": "b@example.com", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]"
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    (problem,) = result.problems
    assert problem.line == 2 and "nested too deeply" in problem.message


def test_a_json_object_over_the_row_limit_is_skipped(tmp_path):
    path = tmp_path / "subs.json"
    items = [{"email": "a@example.com", "note": "x" * 100_000}, {"email": "b@example.com"}]
    path.write_text(json.dumps(items, indent=1))
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["b@example.com"]
    assert result.problems[0].line == 2 and "longer than 65,536 characters" in result.problems[0].message


FORMULAS = {
    "=1+1": b"'=1+1",
    "+44 20 7946 0000": b"'+44 20 7946 0000",
    "-2": b"'-2",
    "@SUM(A1:A9)": b"'@SUM(A1:A9)",
}


def test_export_neutralises_formula_looking_cells(newsletter, tmp_path):
    rows = [f"r{i}@example.com,{value},,,active,,Acme" for i, value in enumerate(FORMULAS)]
    rows.append("=cmd|'/Ccalc'!A0@example.com,Eve,,,active,,=HYPERLINK(\"http://attacker.example\")")
    path = set_list(newsletter, *rows)
    out = tmp_path / "export.csv"
    result = CliRunner().invoke(main, ["--config", str(newsletter), "subscribers", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    for neutral in FORMULAS.values():
        assert b"," + neutral + b"," in raw
    assert b"\n'=cmd|'/Ccalc'!A0@example.com,Eve," in raw
    assert b'"\'=HYPERLINK(""http://attacker.example"")"' in raw
    for line in raw.splitlines()[1:]:
        for cell in line.split(b","):
            assert not cell.lstrip(b'"').startswith((b"=", b"+", b"-", b"@", b"\t", b"\r")), line
    # Read back, the export is the same list: the neutralising quote is ours and is taken off again.
    assert [(s.email, s.name) for s in load_subscribers(out).subscribers] == [
        (s.email, s.name) for s in load_subscribers(path).subscribers
    ]


def test_tab_and_carriage_return_at_the_start_are_neutralised_too():
    buffer = io.StringIO()
    write_list([Subscriber(email="a@example.com", name="\tTab", attributes={"x": "\rCR"})], buffer)
    lines = buffer.getvalue().split("\n")
    assert lines[1] == '"a@example.com","\'\tTab","","","active","\'\rCR"'
