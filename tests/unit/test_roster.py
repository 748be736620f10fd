"""households.csv to the roster (elderwatch/roster.py, ``elderwatch roster load``): one case per kind of
bad row, each reported with its line number and skipped; the good rows are still sent."""

from __future__ import annotations

import gzip

import pytest

from elderwatch import cli, roster
from elderwatch.roster import BadRow, read_households, read_households_file
from schemas.households import HOUSEHOLD_CSV_COLUMNS, Household

HEADER = ",".join(HOUSEHOLD_CSV_COLUMNS)
GOOD = "hh-000001,north,heating:electric;lives-alone,Europe/London,w-1,w-2,s-1"

# (row after the header and one good row (so it is line 3), problem reported, or None if it is a household)
ROW_CASES = [
    # every column: the household as written
    pytest.param("hh-000002,north,,Europe/Madrid,w-3,w-4,s-2", None, id="good-row"),
    # only the required columns filled: defaults for the rest (UTC, no backup, no supervisor)
    pytest.param("hh-000002,north,,,w-3,,", None, id="optional-columns-empty"),
    # a household id that is not one (a name, say) never reaches the topic
    pytest.param("Mrs Smith,north,,UTC,w-3,,", "line 3: household_id: String should match pattern", id="bad-household-id"),
    # nobody to ask first: not a roster entry (the duty desk covers households that have none)
    pytest.param("hh-000002,north,,UTC,,w-4,", "line 3: primary_worker: String should match pattern", id="no-primary-worker"),
    pytest.param("hh-000002,north,,UTC,w 3,,", "line 3: primary_worker: String should match pattern", id="bad-staff-id"),
    pytest.param("hh-000002,,,UTC,w-3,,", "line 3: community: String should have at least 1 character", id="no-community"),
    # the day rhythm is learned in local time: an unknown zone is an error, not UTC
    pytest.param("hh-000002,north,,Mars/Olympus,w-3,,", "line 3: timezone: Value error, unknown time zone 'Mars/Olympus'",
                 id="unknown-timezone"),
    pytest.param(f"hh-000002,north,{'x' * 65},UTC,w-3,,", "line 3: tags: Value error, a tag is 1-64 characters",
                 id="tag-too-long"),
    # a shifted row would put people in the wrong columns: rejected, not guessed
    pytest.param("hh-000002,north,,UTC,w-3,,,extra", "line 3: wrong number of fields (expected 7)", id="too-many-fields"),
    pytest.param("hh-000002,north,,UTC,w-3", "line 3: wrong number of fields (expected 7)", id="too-few-fields"),
    # the same household twice: the first row counts (a later one is more likely a copy-paste slip)
    pytest.param("hh-000001,south,,UTC,w-9,,", "line 3: household hh-000001 listed twice (first on line 2)",
                 id="listed-twice"),
]


@pytest.mark.parametrize("row, problem", ROW_CASES)
def test_row(row, problem):
    households, bad = read_households([HEADER, GOOD, row])

    assert households[0] == Household.from_csv_row(dict(zip(HOUSEHOLD_CSV_COLUMNS, GOOD.split(","))))
    if problem is None:
        assert bad == [] and len(households) == 2
        assert households[1] == Household.from_csv_row(dict(zip(HOUSEHOLD_CSV_COLUMNS, row.split(","))))
    else:
        assert len(households) == 1 and len(bad) == 1
        assert str(bad[0]).startswith(problem), str(bad[0])


def test_line_numbers_are_the_files_even_with_a_quoted_newline():
    # a tag column quoted over two lines: the next row is on line 4 of the file, and says so
    households, bad = read_households([HEADER + "\n", 'hh-000001,north,"a;\n', 'b",UTC,w-1,,\n', "hh-000002,north,,UTC,,,\n"])
    assert [h.household_id for h in households] == ["hh-000001"]
    assert [b.line for b in bad] == [4]


def test_a_file_that_is_not_a_households_csv_is_one_problem():
    households, bad = read_households(["household_id,meter,ts,value", "hh-000001,water,2026-01-05T00:00:00Z,3"])
    assert households == []
    assert bad == [BadRow(1, f"not a households CSV (columns {HEADER}); missing community, primary_worker")]


def test_files_from_a_spreadsheet_or_gzipped(tmp_path):
    # a byte-order mark (spreadsheet export) must not hide the household_id column
    (tmp_path / "bom.csv").write_text("\ufeff" + HEADER + "\n" + GOOD + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "households.csv.gz", "wt", encoding="utf-8") as f:
        f.write(HEADER + "\n" + GOOD + "\n")
    for name in ("bom.csv", "households.csv.gz"):
        households, bad = read_households_file(tmp_path / name)
        assert (len(households), bad) == (1, []), name


def test_roster_load_sends_the_good_rows_and_reports_the_bad(tmp_path, monkeypatch, capsys):
    path = tmp_path / "households.csv"
    path.write_text("\n".join([HEADER, GOOD, "hh-000002,north,,Mars/Olympus,w-1,,", "hh-000003,south,,UTC,w-5,,",
                               "hh-000004,south,,UTC,,,"]) + "\n")
    sent = []
    monkeypatch.setattr(roster, "send_households",
                        lambda households, *, bootstrap, topic: sent.append((list(households), topic)) or len(sent[-1][0]))
    monkeypatch.setenv("ELDERWATCH_TOPIC_PREFIX", "staging.")

    code = cli.main(["roster", "load", str(path)])

    out, err = capsys.readouterr()
    assert code == 1  # some rows were bad ...
    assert [h.household_id for h in sent[0][0]] == ["hh-000001", "hh-000003"]  # ... the good ones went anyway
    assert sent[0][1] == "staging.households.roster"
    assert out.strip() == "2 households sent to staging.households.roster; 2 bad rows skipped"
    assert [line.split(": ")[0] for line in err.strip().splitlines()] == [f"{path} line 3", f"{path} line 5"]


def test_roster_load_of_a_clean_file_exits_0(tmp_path, monkeypatch, capsys):
    path = tmp_path / "households.csv"
    path.write_text(HEADER + "\n" + GOOD + "\n")
    monkeypatch.setattr(roster, "send_households", lambda households, *, bootstrap, topic: len(list(households)))
    monkeypatch.delenv("ELDERWATCH_TOPIC_PREFIX", raising=False)
    assert cli.main(["roster", "load", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "1 households sent to households.roster"


def test_roster_load_of_a_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["roster", "load", str(tmp_path / "nope.csv")]) == 2
    assert "No such file" in capsys.readouterr().err


# --- meters: the column that enrols the utilities' meters ---------------------------------------

HEADER_WITH_METERS = HEADER + ",meters"
METERS = ("aqua:WM-0042:water@2026-01-01T00:00:00+08:00/2026-03-01T00:00:00Z;"
          "grid%3Aeast:EM/7%3A1:electricity;aqua:WM-0043:water@/2026-02-01T00:00:00Z")


def test_old_file_without_meters_column_still_loads():
    households, bad = read_households([HEADER, GOOD])
    assert bad == [] and households[0].meters == ()


def test_meters_column_round_trips_through_export(tmp_path, monkeypatch, capsys):
    households, bad = read_households([HEADER_WITH_METERS, GOOD + "," + METERS, "hh-000002,south,,UTC,w-3,,,"])
    assert bad == []
    first = households[0]
    assert [(m.utility_id, m.meter_id, m.kind.value) for m in first.meters] == [
        ("aqua", "WM-0042", "water"), ("grid:east", "EM/7:1", "electricity"), ("aqua", "WM-0043", "water")]
    assert first.meters[0].since.isoformat() == "2026-01-01T00:00:00+08:00"
    assert first.meters[2].since is None and first.meters[2].until.isoformat() == "2026-02-01T00:00:00+00:00"
    assert households[1].meters == ()

    # export reads the compacted topic (latest wins, a tombstone removes) and writes a file that loads back
    class Record:
        def __init__(self, key, value):
            self.key, self.value = key, value

    gone = Household.from_csv_row(dict(zip(HOUSEHOLD_CSV_COLUMNS, "hh-000009,east,,UTC,w-9,,".split(","))))
    records = [Record(b"hh-000002", households[1].model_dump_json().encode()),
               Record(b"hh-000009", gone.model_dump_json().encode()),
               Record(b"hh-000001", first.model_copy(update={"community": "old"}).model_dump_json().encode()),
               Record(b"hh-000001", first.model_dump_json().encode()),
               Record(b"hh-000009", None)]
    import elderwatch.topic_reader
    monkeypatch.setattr(elderwatch.topic_reader, "read_to_end", lambda bootstrap, topics, timeout_s: records)
    out = tmp_path / "exported.csv"
    assert cli.main(["roster", "export", "--out", str(out)]) == 0
    assert "2 households" in capsys.readouterr().err
    assert out.read_text().splitlines()[0] == HEADER_WITH_METERS
    again, bad = read_households_file(out)
    assert bad == [] and again == households


@pytest.mark.parametrize("cell, problem", [
    ("aqua:WM-1:gas", "kind"),
    ("aqua:WM:1:water", "is not utility:meter_id:kind"),                     # an unescaped ':' inside an id
    ("aqua:WM 1:water", "meter_id"),
    ("aqua:WM-1:water@2026-01-01T00:00:00", "RFC 3339"),                     # a time without an offset
    ("aqua:WM-1:water@2026-03-01T00:00:00Z/2026-01-01T00:00:00Z", "until must be after"),
    ("aqua:WM-1:water;aqua:WM-1:water@2026-01-01T00:00:00Z", "enrolled twice"),
], ids=["kind", "ambiguous-colon", "bad-id", "naive-since", "until-before-since", "overlap"])
def test_bad_meters_cell_is_a_bad_row(cell, problem):
    households, bad = read_households([HEADER_WITH_METERS, f'{GOOD},"{cell}"'])
    assert households == [] and len(bad) == 1
    assert str(bad[0]).startswith("line 2: meters:") and problem in str(bad[0]), str(bad[0])


def test_same_meter_moving_within_a_household_is_fine():
    households, bad = read_households([HEADER_WITH_METERS, GOOD + ",aqua:WM-1:water@/2026-01-01T00:00:00Z;"
                                                            "aqua:WM-1:water@2026-01-01T00:00:00Z"])
    assert bad == [] and len(households[0].meters) == 2
