"""The detector state record (detectors/state.py): exact, versioned, and never executes anything on load.

In order: a record restores the monitor exactly (every attribute, every float bit); recorded records of
every version (tests/fixtures/state/) still load and the monitor goes on giving exactly the warnings an
uninterrupted run gives; pickled records of before version 1 are refused by default and migrated only
when asked, through an allow-list; anything unreadable is one error type; the detect stage starts such a
household afresh and counts it.

Fixtures are recorded with ``python -m tests.unit.test_state_format record`` (writes tests/fixtures/state/v<N>/
for the current version; never rewrite an older version's files: they are what users' changelogs hold).
"""

from __future__ import annotations

import json
import math
import pickle
import sys
import zlib
from array import array
from collections import deque
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from detectors.monitor import DETECTOR_TYPES, HouseholdMonitor
from detectors.offline import load_household_timezones, read_readings
from detectors.state import (FORMAT, VERSION, LegacyPickleState, StateFormatError, dump_record, load_record,
                             migrate, unpickle_legacy)
from schemas.anomaly import AnomalyKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "state"
#: The simulated households the fixtures were recorded from, and where their state was cut.
SIMULATIONS = {"classic": dict(households=3, days=56, seed=21), "city": dict(households=2, days=56, seed=9, family="city")}
CUT_DAY = 40


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> dict[str, tuple[list, dict[str, str]]]:
    """family -> (readings rows in file order, household zones): the fixtures' households, regenerated."""
    from elderwatch.simulator import simulate

    out = {}
    for name, args in SIMULATIONS.items():
        path = tmp_path_factory.mktemp(name)
        simulate(out_dir=path, compress=True, **args)
        out[name] = (list(read_readings(path / "readings.csv.gz")), load_household_timezones(path / "households.csv"))
    return out


def _households(simulated) -> dict[str, tuple[list, str]]:
    """``<family>-<household>`` (a fixture's name) -> (its rows, its zone)."""
    out = {}
    for family, (rows, zones) in simulated.items():
        for hid, zone in zones.items():
            out[f"{family}-{hid}"] = ([r for r in rows if r[0] == hid], zone)
    return out


def _cut(rows: list) -> datetime:
    """Midnight (the readings' offset) :data:`CUT_DAY` days after the household's first reading."""
    first = rows[0][2]
    return datetime.combine(first.date(), time(0), tzinfo=first.tzinfo) + timedelta(days=CUT_DAY)


def _feed(monitor: HouseholdMonitor, rows) -> list:
    return [w for _, meter, ts, value in rows for w in monitor.process(meter, ts, value)]


def _fingerprint(warnings) -> list[tuple]:
    return [(w.warning_id, w.detected_at.isoformat(), repr(w.score), w.summary) for w in warnings]


def same(a, b, where="monitor") -> None:
    """``a`` and ``b`` hold the same state: same types, same float bits, recursively (caches aside)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (str, int, bool, bytes, date, AnomalyKind)) or a is None:
        assert a == b, f"{where}: {a!r} != {b!r}"
        if isinstance(a, datetime):
            assert a.utcoffset() == b.utcoffset(), where
    elif isinstance(a, (list, tuple, deque, array)):  # arrays: the hourly tables' columns, compared number by number
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, (set, frozenset)):
        assert a == b, where
    elif isinstance(a, dict):
        assert list(a) == list(b) or set(a) == set(b), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    else:
        skip = {"_tz", "_reading", "_memo", "_first_t", "_bars", "_day_hour", "_day", "_param_defaults_"}
        va, vb = _attributes(a, skip), _attributes(b, skip)
        assert set(va) == set(vb), f"{where}: attributes {sorted(va)} != {sorted(vb)}"
        for k in va:
            same(va[k], vb[k], f"{where}.{k}")


def _attributes(obj, skip) -> dict:
    out = {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in skip}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in skip and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


# -- a record restores the monitor exactly -----------------------------------------------------------

def test_a_record_restores_every_attribute_of_a_monitor_at_any_point(simulated):
    checked = 0
    for name, (rows, zone) in _households(simulated).items():
        monitor = HouseholdMonitor(rows[0][0], zone)
        monitor.record_feedback("inactivity", "false_alarm", "ticket-1/closed")
        for i, (_, meter, ts, value) in enumerate(rows):
            monitor.process(meter, ts, value)
            if i % 997 == 0 or i == len(rows) - 1:
                record = monitor.dumps()
                restored = HouseholdMonitor.loads(record)
                same(restored, monitor)
                assert restored.dumps() == record  # and it writes the same record again
                checked += 1
    assert checked > 50


def test_every_attribute_of_a_detector_is_a_parameter_state_or_a_cache(simulated):
    """A new attribute that is neither would be lost by a round trip: add it to the detector's ``STATE``."""
    rows, zones = simulated["classic"]
    hid = next(iter(zones))
    monitor = HouseholdMonitor(hid, zones[hid])
    _feed(monitor, [r for r in rows if r[0] == hid])
    for detector in monitor.detectors:
        known = set(detector._param_defaults()) | set(detector.STATE) | set(detector.CACHES) | {"meters"}
        assert set(vars(detector)) <= known, f"{type(detector).__name__}: {set(vars(detector)) - known}"
    assert set(DETECTOR_TYPES) == {type(d).__name__ for d in monitor.detectors}


def test_the_record_is_compact_json_of_plain_values():
    monitor = HouseholdMonitor("hh-1", "Asia/Shanghai")
    record = json.loads(zlib.decompress(monitor.dumps()))
    assert record["format"] == FORMAT and record["version"] == VERSION
    assert record["timezone"] == "Asia/Shanghai"
    assert [d["type"] for d in record["detectors"]] == [type(d).__name__ for d in monitor.detectors]


# -- recorded records of every version --------------------------------------------------------------

def _recorded(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.state"))


def test_there_is_a_recorded_state_of_every_version():
    for version in range(1, VERSION + 1):
        assert len(_recorded(f"v{version}")) >= 3, f"record states of version {version}: see this module's docstring"
    assert len(_recorded("pickle")) >= 3


@pytest.mark.parametrize("version", range(1, VERSION + 1))
def test_a_recorded_state_continues_with_the_warnings_of_an_uninterrupted_run(simulated, version):
    households = _households(simulated)
    after_cut = 0
    for path in _recorded(f"v{version}"):
        monitor = HouseholdMonitor.loads(path.read_bytes())
        rows, zone = households[path.stem]
        cut = _cut(rows)
        assert monitor.timezone == zone
        uninterrupted = HouseholdMonitor(monitor.household_id, zone)
        _feed(uninterrupted, [r for r in rows if r[2] < cut])
        if version == VERSION:  # the current code writes exactly the recorded record
            same(monitor, uninterrupted)
            assert uninterrupted.dumps() == path.read_bytes(), "the record changed: raise VERSION and add a migration"
        expected = _fingerprint(_feed(uninterrupted, [r for r in rows if r[2] >= cut]))
        assert _fingerprint(_feed(monitor, [r for r in rows if r[2] >= cut])) == expected
        after_cut += len(expected)
    assert after_cut >= 3  # the comparison covers warnings, not only silence


def test_a_migration_upgrades_a_record_one_version_at_a_time():
    record = {"format": FORMAT, "version": 1, "a": 1}
    steps = {1: lambda r: {**r, "version": 2, "b": r["a"] + 1}, 2: lambda r: {**r, "version": 3, "c": r["b"] * 10}}
    assert migrate(dict(record), steps, current=3) == {"format": FORMAT, "version": 3, "a": 1, "b": 2, "c": 20}
    with pytest.raises(StateFormatError, match="no migration from state version 2"):
        migrate(dict(record), {1: steps[1]}, current=3)
    with pytest.raises(StateFormatError, match="did not give version 2"):
        migrate(dict(record), {1: lambda r: r}, current=2)
    assert load_record(dump_record(record), migrations=steps, current=3)["c"] == 20


# -- pickled records of before version 1 --------------------------------------------------------------

def test_a_pickled_record_is_not_unpickled_by_default():
    for path in _recorded("pickle"):
        with pytest.raises(LegacyPickleState):
            HouseholdMonitor.loads(path.read_bytes())
        assert issubclass(LegacyPickleState, StateFormatError)


def test_a_pickled_record_migrates_when_asked_and_continues_with_the_same_warnings(simulated):
    households = _households(simulated)
    after_cut = 0
    for path in _recorded("pickle"):
        monitor = HouseholdMonitor.loads(path.read_bytes(), migrate_pickled=True)
        rows, zone = households[path.stem]
        cut = _cut(rows)
        uninterrupted = HouseholdMonitor(monitor.household_id, zone)
        _feed(uninterrupted, [r for r in rows if r[2] < cut])
        same(monitor, uninterrupted)
        record = monitor.dumps()  # saved again: the current format
        assert json.loads(zlib.decompress(record))["version"] == VERSION
        resumed = HouseholdMonitor.loads(record)
        expected = _fingerprint(_feed(uninterrupted, [r for r in rows if r[2] >= cut]))
        assert _fingerprint(_feed(resumed, [r for r in rows if r[2] >= cut])) == expected
        after_cut += len(expected)
    assert after_cut >= 3


class _Boom:
    def __reduce__(self):
        return (print, ("a pickled state ran code",))


@pytest.mark.parametrize("payload", [
    _Boom(),                                      # builtins.print: a function to call
    {"monitor": __import__("os").getcwd},         # os.getcwd
    HouseholdMonitor.__init__,                   # a function of ours is not a state class either
])
def test_a_pickled_record_naming_anything_else_is_refused_before_it_is_looked_up(payload, capsys):
    data = zlib.compress(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(StateFormatError, match="which a state may not hold"):
        HouseholdMonitor.loads(data, migrate_pickled=True)
    assert "ran code" not in capsys.readouterr().out


def test_a_pickled_record_that_is_not_a_monitor_or_is_truncated_is_a_state_format_error():
    with pytest.raises(StateFormatError, match="not a HouseholdMonitor"):
        HouseholdMonitor.loads(zlib.compress(pickle.dumps({"a": 1}, protocol=pickle.HIGHEST_PROTOCOL)), migrate_pickled=True)
    good = zlib.decompress(_recorded("pickle")[0].read_bytes())
    with pytest.raises(StateFormatError, match="unreadable pickled state"):
        unpickle_legacy(zlib.compress(good[: len(good) // 2]))


# -- anything unreadable: one error type, naming the field --------------------------------------------

def _record() -> dict:
    return json.loads(zlib.decompress(HouseholdMonitor("hh-1", "Europe/London").dumps()))


def _set(record: dict, path: str, value) -> dict:
    *parents, last = path.split("/")
    node = record
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return record


_DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("version", VERSION + 1, "newer than this code reads"),
    ("version", 0, "is not a version"),
    ("version", "1", "is not a version"),
    ("format", "something.else", "not an elderwatch.monitor"),
    ("household_id", _DELETE, "missing 'household_id'"),
    ("readings", "12", "readings: expected an integer"),
    ("readings", 1.5, "readings: expected an integer"),
    ("timezone", "Mars/Olympus", "unreadable monitor state"),
    ("detectors/0/type", "os.system", "unknown detector type"),
    ("detectors/0/params/margin", "4", "expected a number"),
    ("detectors/0/params/unexpected", 1, "expected exactly"),
    ("detectors/0/learned/_since_hour", None, "expected an integer"),
    ("detectors/0/learned/_rates/water/values", "AAAA", "doubles"),
    ("detectors/0/learned/_since", "yesterday", "not an ISO 8601 time"),
    ("detectors/0/learned/_since", "2026-01-05T10:00:00", "without a UTC offset"),
    ("detectors/1/learned/_run", [[1.0]], "expected 2 items"),
    ("config/kinds", ["inactivity", "nonsense"], "unreadable monitor state"),
    ("sensitivity", {"surge": True}, "expected a number"),
    ("feedback/keys", ["zz"], "not a hex key"),
    ("usage/hours", None, "expected an integer"),
])
def test_a_damaged_record_is_a_state_format_error_naming_what_is_wrong(path, value, message):
    record = _set(_record(), path, value)
    with pytest.raises(StateFormatError, match=message):
        HouseholdMonitor.loads(zlib.compress(json.dumps(record).encode()))


@pytest.mark.parametrize("data", [b"", b"not zlib", zlib.compress(b"not json"), zlib.compress(b"[1, 2]"),
                                  zlib.compress(b'{"format": "elderwatch.monitor", "version": 1, "x": NaN}'),
                                  zlib.compress(b"[" * 100_000 + b"]" * 100_000)])
def test_bytes_that_are_not_a_record_are_a_state_format_error(data):
    with pytest.raises(StateFormatError):
        HouseholdMonitor.loads(data)


# -- recording the fixtures ----------------------------------------------------------------------------

def record_fixtures(out: Path = FIXTURES / f"v{VERSION}") -> list[Path]:
    """The current version's records of the fixtures' households, cut at day :data:`CUT_DAY`."""
    import tempfile

    from elderwatch.simulator import simulate

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in SIMULATIONS.items():
            simulate(out_dir=Path(tmp) / name, compress=True, **args)
            rows = list(read_readings(Path(tmp) / name / "readings.csv.gz"))
            for hid, zone in load_household_timezones(Path(tmp) / name / "households.csv").items():
                mine = [r for r in rows if r[0] == hid]
                monitor = HouseholdMonitor(hid, zone)
                _feed(monitor, [r for r in mine if r[2] < _cut(mine)])
                path = out / f"{name}-{hid}.state"
                path.write_bytes(monitor.dumps())
                written.append(path)
    return written


if __name__ == "__main__" and sys.argv[1:] == ["record"]:
    for p in record_fixtures():
        print(p, p.stat().st_size)


# -- the detect stage with a record it cannot read ------------------------------------------------------

def _detect_stage(table: dict, **kwargs):
    from streams.detect import HouseholdStates
    return HouseholdStates(table, {}, "Europe/London", **kwargs)


def _reading(hid: str, rows: list, i: int):
    from schemas.readings import ValidatedReading
    _, meter, ts, value = rows[i]
    return ValidatedReading(household_id=hid, meter=meter, ts=ts, value=value)


@pytest.mark.parametrize("stored", ["pickle", "damaged", "newer", "too short"])
def test_the_detect_stage_starts_a_household_afresh_on_a_record_it_cannot_read_and_counts_it(simulated, stored):
    from streams.detect import decode_state, encode_state

    rows, zone = _households(simulated)["classic-hh-000001"]
    after = [r for r in rows if r[2] >= _cut(rows)]
    pickled = _recorded("pickle")[0].read_bytes()
    v1 = json.loads(zlib.decompress((FIXTURES / "v1" / "classic-hh-000001.state").read_bytes()))
    record = {"pickle": encode_state(7, pickled),
              "damaged": encode_state(7, pickled[:100]),
              "newer": encode_state(7, dump_record({**v1, "version": VERSION + 1})),
              "too short": b"\x00\x01"}[stored]
    table = {b"hh-000001": record}
    from streams.metrics import DetectMetrics

    metrics = DetectMetrics()
    states = _detect_stage(table, metrics=metrics)
    if stored != "too short":
        assert states.process(_reading("hh-000001", after, 0), 7) is None  # a redelivery: still skipped
    step = states.process(_reading("hh-000001", after, 1), 8)
    # read once: after the redelivery, the fresh monitor waits in the cache beside the record it stands for
    assert states.unreadable_states == 1
    assert metrics.unreadable_states._value.get() == states.unreadable_states  # on /metrics too
    assert step.monitor.readings == 1 and step.warnings == []  # relearning from its first reading
    states.store(step)
    offset, monitor_record = decode_state(table[b"hh-000001"])
    assert offset == 8 and json.loads(zlib.decompress(monitor_record))["version"] == VERSION
    states.cache.clear()
    assert states.process(_reading("hh-000001", after, 2), 9).monitor.readings == 2  # and it is read back
    assert states.unreadable_states == 1


def test_the_detect_stage_migrates_a_pickled_record_when_asked(simulated):
    import functools

    from streams.detect import decode_state, encode_state

    rows, zone = _households(simulated)["classic-hh-000001"]
    after = [r for r in rows if r[2] >= _cut(rows)]
    pickled = (FIXTURES / "pickle" / "classic-hh-000001.state").read_bytes()
    table = {b"hh-000001": encode_state(7, pickled)}
    states = _detect_stage(table, monitor_loads=functools.partial(HouseholdMonitor.loads, migrate_pickled=True))
    step = states.process(_reading("hh-000001", after, 0), 8)
    assert states.unreadable_states == 0
    before = HouseholdMonitor.loads(pickled, migrate_pickled=True).readings
    assert step.monitor.readings == before + 1
    states.store(step)
    assert json.loads(zlib.decompress(decode_state(table[b"hh-000001"])[1]))["version"] == VERSION
