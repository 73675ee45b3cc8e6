"""Reading a subscriber list as its owner wrote it (digest/subscribers.py): what is wrong with a file
as a whole (missing, empty, no address column, not a list), each row's cells read into fields, the
JSON shapes a list comes in, and where each problem is (its line), so the owner can mend it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest import subscribers
from digest.models import Subscriber
from digest.subscribers import is_valid_email, load_subscribers, split_terms, write_list


@pytest.fixture(autouse=True)
def fresh_memos(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads its header and cells afresh: the memos of repeated headers and cells
    (digest.subscribers keeps them for the life of the process) would otherwise answer with what
    an earlier test (or an earlier version of the code, in a forked mutation run) made of them."""
    for memo in ("_CELLS", "_TERMS", "_VALUES"):
        monkeypatch.setattr(subscribers, memo, {})
    subscribers._plan.cache_clear()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.severity, p.message) for p in load_subscribers(path).problems]


# ---------------------------------------------------------------- the file as a whole


def test_a_list_that_is_not_there_is_one_problem_naming_it(tmp_path):
    path = tmp_path / "gone.csv"
    result = load_subscribers(path)
    assert result.subscribers == ()
    (problem,) = result.problems
    assert (problem.source, problem.message, problem.line) == (str(path), "subscriber list not found", None)


@pytest.mark.parametrize("text", ["", "\n", " \nmail\n"])
def test_an_empty_csv_list_says_so(tmp_path, text):
    path = write(tmp_path, "subs.csv", text)
    assert problems(path) == [(1, "error", "empty subscriber list")]


def test_a_csv_list_without_an_address_column_is_not_read(tmp_path):
    path = write(tmp_path, "subs.csv", "mail,name\na@example.com,Ann\n")
    result = load_subscribers(path)
    assert result.subscribers == ()
    assert problems(path) == [(1, "error", "no 'email' column in the header")]


@pytest.mark.parametrize("column", ["Email Address", "email_address", "E-mail"])
def test_another_tools_export_read_as_a_list_says_how_to_import_it(tmp_path, column):
    """Never read as it is: a Mailchimp "unsubscribed" export has no status column, so its rows
    would read as active."""
    path = write(tmp_path, "export.csv", f"{column},First Name\nann@example.com,Ann\n")
    assert problems(path) == [
        (
            1,
            "error",
            f"no 'email' column in the header ({column.lower()!r} looks like another tool's export: for"
            " Mailchimp, Substack, Buttondown, listmonk or Ghost, bring it in with `digest subscribers import"
            " --from TOOL FILE`; otherwise rename the column to 'email')",
        )
    ]


def test_a_header_naming_columns_twice_names_each_once_in_order(tmp_path):
    path = write(tmp_path, "subs.csv", "name,email,tags,name,tags,tags\nAnn,a@example.com,ai,Bo,x,y\n")
    assert problems(path) == [
        (1, "error", "column(s) 'name', 'tags' appear more than once in the header; the list is not read")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty subscriber list"),
        ("\n", "empty subscriber list"),
        ("mail,name\na@example.com,Ann\n", "no 'email' column in the header"),
        (
            "email,name,name\na@example.com,Ann,Bo\n",
            "column(s) 'name' appear more than once in the header; the list is not read",
        ),
    ],
)
def test_each_problem_of_a_csv_header_names_its_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "subs.csv", text)
    (problem,) = load_subscribers(path).problems
    assert str(problem) == f"{path}:1: error: {message}"


def test_a_csv_list_saved_with_semicolons_or_tabs_is_read_by_its_header(tmp_path):
    """Excel saves "CSV" with semicolons where the decimal mark is a comma (Germany, France ...),
    and "Text" with tabs; the header says which. A quoted cell keeps its own separators."""
    semi = write(tmp_path, "de.csv", 'Email;Name;Tags\nann@example.com;Ann;"ai; space"\nbob@example.com;"B;ob";x\n')
    tabs = write(tmp_path, "tabs.csv", "email\tname\ncat@example.com\tCat\n")
    one = write(tmp_path, "one.csv", "email\ndan@example.com\n")  # one column: nothing to tell
    read = {path.name: load_subscribers(path) for path in (semi, tabs, one)}
    assert [(s.email, s.name, s.tags) for s in read["de.csv"].subscribers] == [
        ("ann@example.com", "Ann", ("ai", "space")),
        ("bob@example.com", "B;ob", ("x",)),
    ]
    assert [(s.email, s.name) for s in read["tabs.csv"].subscribers] == [("cat@example.com", "Cat")]
    assert [s.email for s in read["one.csv"].subscribers] == ["dan@example.com"]
    assert not any(r.problems for r in read.values())


def test_an_unbalanced_quote_in_a_semicolon_list_does_not_swallow_the_next_row(tmp_path):
    path = write(tmp_path, "de.csv", 'email;name\nann@example.com;"Ann\nbob@example.com;Bob\n')
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["bob@example.com"]
    assert [(p.line, p.message.split(":")[0]) for p in result.problems] == [(2, "unbalanced quote")]


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff", b""])
def test_a_utf16_list_says_so_and_how_to_save_it(tmp_path, bom):
    """Excel's "Unicode Text" is UTF-16: read as UTF-8 it has no email column, which misleads."""
    path = tmp_path / "unicode.txt.csv"
    text = "email\tname\nann@example.com\tAnn\n"
    path.write_bytes(bom + text.encode("utf-16-be" if bom == b"\xfe\xff" else "utf-16-le"))
    assert problems(path) == [
        (1, "error", 'the file is UTF-16, not UTF-8 (Excel\'s "Unicode Text"): save it as "CSV UTF-8"')
    ]


def test_a_list_named_in_capitals_json_is_read_as_json(tmp_path):
    path = write(tmp_path, "SUBS.JSON", '[{"email": "a@example.com", "preferences": {"tags": ["ai"]}}]')
    result = load_subscribers(path)
    assert not result.problems
    assert [(s.email, s.tags) for s in result.subscribers] == [("a@example.com", ("ai",))]


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_an_empty_json_file_says_the_list_is_empty(tmp_path, text):
    path = write(tmp_path, "subs.json", text)
    assert problems(path) == [(1, "error", "empty subscriber list")]


@pytest.mark.parametrize("text", ['"a@example.com"', "42", '{"readers": []}', '{"subscribers": {}}', "\n  x"])
def test_json_that_is_not_a_list_of_subscribers_says_what_is_expected(tmp_path, text):
    path = write(tmp_path, "subs.json", text)
    assert problems(path) == [(1, "error", "expected a JSON list of subscriber objects")]


def test_an_empty_json_list_has_no_subscribers_and_no_problem(tmp_path):
    path = write(tmp_path, "subs.json", " [ \n ] ")
    result = load_subscribers(path)
    assert result.subscribers == () and result.problems == ()


def test_a_json_object_holding_the_list_under_subscribers_is_read(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '{"exported": "2025-06-03",\n "subscribers": [\n  {"email": "a@example.com"},\n  {"email": "bad"}\n ]}\n',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert [(s.line) for s in result.subscribers] == [3]
    assert problems(path) == [(4, "error", "invalid email address 'bad'")]


def test_a_json_file_that_is_not_utf8_is_one_problem(tmp_path):
    path = tmp_path / "subs.json"
    path.write_bytes(b'[{"email": "a@example.com", "name": "Caf\xe9"}]')
    ((line, severity, message),) = problems(path)
    assert (line, severity) == (None, "error") and message.startswith("cannot read: ")
    assert "utf-8" in message
    (problem,) = load_subscribers(path).problems
    assert str(problem).startswith(f"{path}: error: cannot read: ")  # names the file, no line


def test_an_unpaired_surrogate_in_a_json_list_is_replaced_with_a_warning_and_the_reader_still_mailed(tmp_path):
    """JSON may spell half a surrogate pair ("\ud800"): UTF-8 cannot encode it, so that reader's
    email failed at every send. It reads as U+FFFD, with a warning naming the line and field; a
    pair spelt as two escapes is one character and no problem."""
    path = tmp_path / "subs.json"
    path.write_text(
        "[\n"
        '{"email": "ada@example.com", "name": "Ada \\ud800", "tags": ["ai", "x\\udfff"]},\n'
        '{"email": "bob@example.com", "name": "Bob \\ud83d\\ude00", "company": "Acme"},\n'
        '{"email": "eve@example.com", "preferences": {"tags": ["\\udc00"]}, "meta": {"note\\ud800": "\\udbff!"}, "x\\udc00": 1}\n'
        "]\n",
        encoding="utf-8",
    )
    result = load_subscribers(path)
    ada, bob, eve = result.subscribers
    assert (ada.name, ada.tags) == ("Ada \ufffd", ("ai", "x\ufffd"))
    assert bob.name == "Bob \U0001f600" and eve.tags == ("\ufffd",)
    assert [(p.line, p.severity, p.message) for p in result.problems] == [
        (2, "warning", "name, tags: an unpaired UTF-16 surrogate (\\uD800-\\uDFFF), shown as U+FFFD"),
        (
            4,
            "warning",
            "preferences.tags, meta, meta.note\ufffd, a field name: an unpaired UTF-16 surrogate (\\uD800-\\uDFFF), shown as U+FFFD",
        ),
    ]
    for s in result.subscribers:  # every field now encodes, as an email's headers and body must
        for value in (s.name, *s.tags, *s.attributes.values()):
            value.encode("utf-8")


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "subs.json"
    path.write_bytes(b'\xef\xbb\xbf[{"email": "a@example.com"}]')
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"] and not result.problems


def test_broken_json_stops_the_list_at_the_line_it_breaks_on(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[\n  {"email": "a@example.com"},\n  {"email": "b@example.com",},\n  {"email": "c@example.com"}\n]\n',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    ((line, severity, message),) = problems(path)
    assert (line, severity) == (3, "error")
    assert message.startswith("not valid JSON: ") and message.endswith("; the list stops here")


def test_a_list_is_looked_for_only_at_the_top_of_a_wrapping_object(tmp_path):
    path = write(tmp_path, "subs.json", '{"subscribers": 5, "old": {"subscribers": [{"email": "a@example.com"}]}}')
    assert problems(path) == [(1, "error", "expected a JSON list of subscriber objects")]


def test_a_wrapping_object_nested_too_deeply_is_an_error_on_its_first_line(tmp_path):
    path = write(tmp_path, "subs.json", '{"subscribers": [{"email": "a@example.com", "x": ' + "[" * 100_000 + "]}")
    assert problems(path) == [(1, "error", "not valid JSON: nested too deeply; the list stops here")]


def test_an_object_nested_too_deeply_stops_the_list_on_its_line(tmp_path):
    path = write(tmp_path, "subs.json", '[\n {"email": "a@example.com"},\n {"x": ' + "[" * 100_000 + "]}]")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert problems(path) == [(3, "error", "not valid JSON: nested too deeply; the list stops here")]


def test_blank_lines_before_the_list_count_in_line_numbers(tmp_path):
    path = write(tmp_path, "subs.json", '\n\n  {"subscribers":\n[{"email": "a@example.com"},\n {"email": "b"}]}')
    result = load_subscribers(path)
    assert [(s.email, s.line) for s in result.subscribers] == [("a@example.com", 4)]
    assert problems(path) == [(5, "error", "invalid email address 'b'")]
    path = write(tmp_path, "subs.json", '\n[\n{"email": "bad"}]')
    assert problems(path) == [(3, "error", "invalid email address 'bad'")]


def test_an_object_of_exactly_the_row_limit_is_read_and_one_character_more_is_skipped(tmp_path):
    def item(size: int, address: str) -> str:
        start = '{"email": "' + address + '", "note": "'
        return start + "x" * (size - len(start) - 2) + '"}'

    assert len(item(65_536, "a@example.com")) == 65_536
    path = write(
        tmp_path, "subs.json", "[" + item(65_536, "a@example.com") + ",\n" + item(65_537, "b@example.com") + "]"
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert problems(path) == [(2, "error", "object longer than 65,536 characters; skipped")]


def test_a_long_list_is_read_to_its_end(tmp_path):
    items = ",\n".join(f'{{"email": "reader{i}@example.com", "name": "Reader {i}"}}' for i in range(3_000))
    path = write(tmp_path, "subs.json", "[\n" + items + "\n]")
    result = load_subscribers(path)
    assert len(tmp_path.joinpath("subs.json").read_text()) > 2 * 65_536
    assert not result.problems
    assert [(s.email, s.line) for s in result.subscribers[-2:]] == [
        ("reader2998@example.com", 3_000),
        ("reader2999@example.com", 3_001),
    ]


def test_a_broken_wrapping_object_is_reported_on_its_line(tmp_path):
    path = write(tmp_path, "subs.json", '{"subscribers": [\n  {"email": "a@example.com"}\n  {"email": "b"}\n]}\n')
    ((line, severity, message),) = problems(path)
    assert (line, severity) == (3, "error") and message.startswith("not valid JSON: ")


def test_items_that_are_not_objects_are_each_a_problem_on_their_own_line(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[\n  "a@example.com",\n  {"email": "b@example.com"},\n\n  [1, 2],\n  {"email": "c@example.com"}\n]',
    )
    result = load_subscribers(path)
    assert [(s.email, s.line) for s in result.subscribers] == [("b@example.com", 3), ("c@example.com", 6)]
    assert problems(path) == [(2, "error", "expected an object"), (5, "error", "expected an object")]


def test_a_missing_comma_between_objects_ends_the_list_there(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[\n  {"email": "a@example.com"},\n  {"email": "b@example.com"}\n\n  {"email": "c@example.com"}\n]',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com", "b@example.com"]
    assert problems(path) == [(5, "error", "not valid JSON: expected ',' or ']' after an object")]


def test_objects_on_one_line_are_all_read_with_that_line(tmp_path):
    path = write(tmp_path, "subs.json", '[{"email": "a@example.com"},{"email": "b@example.com"}]')
    result = load_subscribers(path)
    assert [(s.email, s.line) for s in result.subscribers] == [("a@example.com", 1), ("b@example.com", 1)]


# ---------------------------------------------------------------- each row


def test_a_row_without_an_address_is_skipped_with_a_problem(tmp_path):
    path = write(tmp_path, "subs.csv", "email,name\n,Ann\n  ,Bo\nc@example.com,Cy\n")
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["c@example.com"]
    assert problems(path) == [(2, "error", "no email"), (3, "error", "no email")]


def test_an_address_is_read_without_the_blanks_around_it(tmp_path):
    path = write(tmp_path, "subs.json", '[{"email": "  a@example.com\\t"},\n {"email": null},\n {"name": "Nobody"}]')
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert problems(path) == [(2, "error", "no email"), (3, "error", "no email")]


def test_every_problem_names_the_file_and_line_of_its_row(tmp_path):
    path = write(tmp_path, "subs.csv", "email\na@example.com\nbroken\n")
    (problem,) = load_subscribers(path).problems
    assert str(problem) == f"{path}:3: error: invalid email address 'broken'"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty subscriber list"),
        ("42", 1, "expected a JSON list of subscriber objects"),
        ('{"subscribers": 5}', 1, "expected a JSON list of subscriber objects"),
        (
            '{"subscribers": [\n  {"email": "a@example.com"}\n  {"email": "b"}\n]}\n',
            3,
            "not valid JSON: Expecting ',' delimiter; the list stops here",
        ),
        (
            '{"subscribers": [{"x": ' + "[" * 100_000 + "]}]}",
            1,
            "not valid JSON: nested too deeply; the list stops here",
        ),
        (
            '[\n  {"email": "a@example.com"},\n  {"email" "b@example.com"}\n]',
            3,
            "not valid JSON: Expecting ':' delimiter; the list stops here",
        ),
        ('[\n {"email": "a@example.com"},\n {"x": ' + "[" * 100_000 + "]}]", 3, "not valid JSON: nested too deeply"),
        ('[{"email": "a@example.com"}\n {"email": "b@example.com"}]', 2, "not valid JSON: expected ',' or ']'"),
        ('[\n  "a@example.com"\n]', 2, "expected an object"),
        ('[\n{"email": "a@example.com", "note": "' + "x" * 65_536 + '"}]', 2, "object longer than 65,536 characters"),
    ],
)
def test_each_problem_of_a_json_list_names_its_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, "subs.json", text)
    (problem,) = load_subscribers(path).problems
    assert str(problem).startswith(f"{path}:{line}: error: {message}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("email\na@example.com\nA@example.com\n", "3: error: duplicate address A@example.com (first on line 2)"),
        (
            "email,status,unsubscribed\na@example.com,active,true\n",
            "2: warning: subscription fields disagree (status says active",
        ),
        (
            "email,subscribed_at\na@example.com,soon\n",
            "2: warning: subscribed_at 'soon' is not a date and time (ISO 8601 expected); ignored",
        ),
        ("email,opted_out\na@example.com,yes\n", "2: error: field 'opted_out' looks like a subscription flag"),
    ],
)
def test_each_problem_of_a_row_names_its_file_and_line(tmp_path, text, problem):
    path = write(tmp_path, "subs.csv", text)
    (found,) = load_subscribers(path).problems
    assert str(found).startswith(f"{path}:{problem}")


def test_a_duplicate_in_any_case_keeps_the_first_row(tmp_path):
    path = write(tmp_path, "subs.csv", "email,name\nAnn@Example.com,First\nann@example.com,Second\n")
    result = load_subscribers(path)
    assert [(s.email, s.name) for s in result.subscribers] == [("Ann@Example.com", "First")]
    assert problems(path) == [(3, "error", "duplicate address ann@example.com (first on line 2)")]


def test_each_subscriber_knows_the_file_and_line_it_came_from(tmp_path):
    path = write(tmp_path, "subs.csv", "email\na@example.com\n\nb@example.com\n")
    result = load_subscribers(path)
    assert [(s.file, s.line) for s in result.subscribers] == [(str(path), 2), (str(path), 4)]
    assert result.active == result.subscribers


def test_only_active_subscribers_are_active(tmp_path):
    path = write(tmp_path, "subs.csv", "email,status\na@example.com,active\nb@example.com,unsubscribed\n")
    assert [s.email for s in load_subscribers(path).active] == ["a@example.com"]


def test_names_and_cells_are_one_line_each(tmp_path):
    path = write(tmp_path, "subs.csv", 'email,name,company\na@example.com,"Ann\n  Lee ","Acme\tInc"\n')
    (a,) = load_subscribers(path).subscribers
    assert a.name == "Ann Lee" and dict(a.attributes) == {"company": "Acme Inc"}


def test_json_numbers_are_attributes_as_text_and_other_values_are_left_out(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "seats": 3, "ratio": 0.5, "plan": "", "trial": null,'
        ' "teams": ["x"], "address": {"city": "Oslo"}, "name": null}]',
    )
    result = load_subscribers(path)
    (a,) = result.subscribers
    assert dict(a.attributes) == {"seats": "3", "ratio": "0.5"}
    assert a.name == "" and not result.problems


def test_the_list_id_is_kept_as_text_when_it_is_text_or_a_number(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "id": 42}, {"email": "b@example.com", "id": " x\\n7 "},'
        ' {"email": "c@example.com", "id": null}, {"email": "d@example.com", "id": [1]}]',
    )
    result = load_subscribers(path)
    assert [s.external_id for s in result.subscribers] == ["42", "x 7", "", ""]


def test_the_first_subscription_time_with_a_value_counts(tmp_path):
    path = write(
        tmp_path,
        "subs.csv",
        "email,subscribed_at,subscribed_on\n"
        "a@example.com,,2025-01-02T03:04:05Z\n"
        "b@example.com,2024-05-06T07:08:09Z,2025-01-02T03:04:05Z\n"
        "c@example.com,soon,2025-01-02T03:04:05Z\n"
        "d@example.com,,\n",
    )
    result = load_subscribers(path)
    assert [s.subscribed_at for s in result.subscribers] == [
        datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        None,
        None,
    ]
    assert problems(path) == [
        (4, "warning", "subscribed_at 'soon' is not a date and time (ISO 8601 expected); ignored")
    ]


def test_topics_from_a_categories_and_a_category_column_are_merged_without_repeats(tmp_path):
    path = write(
        tmp_path,
        "subs.csv",
        'email,categories,category\na@example.com,"Science; AI",ai\nb@example.com,,Space\nc@example.com,Space,\n',
    )
    result = load_subscribers(path)
    assert [s.categories for s in result.subscribers] == [("Science", "AI"), ("Space",), ("Space",)]


def test_a_json_list_of_topics_skips_what_is_not_text(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "tags": [1, "AI", null, "ai", " Space ", ""]},'
        ' {"email": "b@example.com", "tags": 7}]',
    )
    result = load_subscribers(path)
    assert [s.tags for s in result.subscribers] == [("AI", "Space"), ()]


def test_topics_given_as_an_object_are_no_topics_and_leave_the_same_words_in_a_list_alone(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "tags": {"robotics": true, "space": true}},'
        ' {"email": "b@example.com", "tags": ["robotics", "space"]}]',
    )
    assert [s.tags for s in load_subscribers(path).subscribers] == [(), ("robotics", "space")]


def test_the_consent_record_of_an_export_is_never_read_as_attributes(tmp_path):
    path = write(
        tmp_path,
        "subs.csv",
        "email,status,consent_at,consent_source,consent_text,consent_ip,confirmed_at,company\n"
        "a@example.com,active,2025-01-01T00:00:00Z,form,Yes please,192.0.2.1,2025-01-01T00:05:00Z,Acme\n",
    )
    result = load_subscribers(path)
    assert not result.problems
    (a,) = result.subscribers
    assert dict(a.attributes) == {"company": "Acme"} and a.active


def test_topic_cells_split_on_commas_and_semicolons_keeping_the_first_spelling():
    assert split_terms("AI; robotics,  ai ;;Robotics, space") == ("AI", "robotics", "space")
    assert split_terms(["AI", "ai", 3, "Space"]) == ("AI", "Space")
    assert split_terms(["x", ["unhashable"], "y"]) == ("x", "y")
    assert split_terms(None) == () and split_terms(5) == ()


def test_preferences_in_json_win_over_top_level_topics_and_cadence(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "tags": ["old"], "categories": ["Old"], "frequency": "daily",'
        ' "preferences": {"tags": ["new"], "categories": ["New"], "frequency": "monthly"}},'
        ' {"email": "b@example.com", "tags": ["kept"], "frequency": "daily",'
        ' "preferences": {"tags": null, "categories": ["Only"]}},'
        ' {"email": "c@example.com", "tags": ["plain"], "preferences": "weekly"}]',
    )
    result = load_subscribers(path)
    assert not result.problems
    assert [(s.tags, s.categories, s.frequency) for s in result.subscribers] == [
        (("new",), ("New",), "monthly"),
        (("kept",), ("Only",), "daily"),
        (("plain",), (), None),
    ]


def test_the_longest_address_a_mailbox_may_have_is_accepted_and_one_more_refused():
    domain = "@" + "d" * 60 + "." + "e" * 60 + ".example.com"
    longest = "a" * (254 - len(domain)) + domain
    assert len(longest) == 254 and is_valid_email(longest)
    assert not is_valid_email("a" + longest)


def test_a_flag_inside_a_list_of_objects_or_four_objects_down_is_refused_by_its_path(tmp_path):
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "lists": [{"id": 1}, {"id": 2, "unsubscribed": true}]},\n'
        ' {"email": "b@example.com", "crm": {"x": {"y": {"z": {"isActive": false}}}}},\n'
        ' {"email": "c@example.com", "crm": {"x": {"y": {"z": {"plan": "pro"}}}}, "lists": [{"id": 3}]},\n'
        # searched four objects down, no further: the search is bounded, whatever a list's nesting
        ' {"email": "d@example.com", "crm": {"x": {"y": {"z": {"w": {"active": false}}}}}}]',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["c@example.com", "d@example.com"]
    assert [(p.line, p.message.split(" looks like")[0]) for p in result.problems] == [
        (1, "field 'lists.1.unsubscribed'"),
        (2, "field 'crm.x.y.z.isActive'"),
    ]


def test_a_flag_in_a_list_of_objects_inside_an_object_is_refused_by_its_path(tmp_path):
    # a CRM export keeps each list a reader is on, with its status, under the reader's record
    path = write(
        tmp_path,
        "subs.json",
        '[{"email": "a@example.com", "crm": {"lists": [{"id": 1}, {"id": 2, "status": "unsubscribed"}]}},\n'
        ' {"email": "b@example.com", "crm": {"lists": [], "labels": ["vip", "beta"]}}]',
    )
    result = load_subscribers(path)
    assert [s.email for s in result.subscribers] == ["b@example.com"]
    assert [(p.line, p.message.split(" looks like")[0]) for p in result.problems] == [(1, "field 'crm.lists.1.status'")]


# ---------------------------------------------------------------- writing


def test_optional_columns_are_written_only_when_someone_has_them():
    buffer = io.StringIO()
    write_list([Subscriber(email="a@example.com", name="Ann", tags=("ai", "x"))], buffer)
    assert buffer.getvalue().splitlines() == ["email,name,tags,categories,status", "a@example.com,Ann,ai;x,,active"]
    for field, value, column in [
        ("external_id", "42", "id"),
        ("subscribed_at", datetime(2025, 6, 3, 18, 57, 8, tzinfo=UTC), "subscribed_at"),
        ("frequency", "weekly", "frequency"),
    ]:
        buffer = io.StringIO()
        write_list([Subscriber(email="a@example.com"), Subscriber(email="b@example.com", **{field: value})], buffer)
        header, first, second = buffer.getvalue().splitlines()
        assert header == f"email,name,tags,categories,status,{column}"
        assert first == "a@example.com,,,,active,"
        assert second.split(",")[-1] == (value.isoformat() if isinstance(value, datetime) else value)


def test_extra_columns_follow_the_list_s_own_and_attributes_come_last():
    subscribers = [
        Subscriber(email="A@example.com", attributes={"plan": "pro"}),
        Subscriber(email="b@example.com", attributes={"team": "red"}),
    ]
    buffer = io.StringIO()
    extra = {"a@example.com": {"consent_at": "2025-01-01", "consent_source": "form"}, "z@example.com": {"x": "1"}}
    write_list(subscribers, buffer, extra=extra)
    assert buffer.getvalue().splitlines() == [
        "email,name,tags,categories,status,consent_at,consent_source,x,plan,team",
        "A@example.com,,,,active,2025-01-01,form,,pro,",
        "b@example.com,,,,active,,,,,red",
    ]


def test_what_is_kept_of_a_list_to_share_repeated_cells_stays_bounded(tmp_path: Path) -> None:
    # repeated cells are shared between rows (a million rows name the same few topics), but a
    # long-running `digest serve` reads lists and strangers' topics again and again: whatever it is
    # fed, it keeps at most 100,000 of each kind, and every row still reads as written
    rows = "".join(f"r{i}@example.com,topic {i},company {i}\n" for i in range(100_050))
    result = load_subscribers(write(tmp_path, "subs.csv", "email,tags,company\n" + rows))
    last = result.subscribers[-1]
    assert (last.tags, dict(last.attributes)) == (("topic 100049",), {"company": "company 100049"})
    assert all(len(memo) <= 100_000 for memo in (subscribers._CELLS, subscribers._TERMS, subscribers._VALUES))
