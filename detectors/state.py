"""Detector state as data: plain JSON values in, plain JSON values out, nothing executed on load.

A household's state record (:meth:`detectors.monitor.HouseholdMonitor.dumps`) is
``zlib(compact JSON)`` of ``{"format": "elderwatch.monitor", "version": N, ...}``. Every object that
is part of the state says what it keeps with ``to_state()`` (JSON values only: numbers, strings,
lists, dicts, ``None``) and is rebuilt by ``from_state(state)``, which checks every field's type and
raises :class:`StateFormatError` on anything it does not expect. Loading a record never imports or
calls anything named by the record: a record can only fill in numbers of classes we chose.

* Floats round-trip exactly: JSON numbers are written with ``repr``; long arrays of floats (a
  detector's 24 hourly means, the 48-hour usage ring) are little-endian IEEE 754 doubles in base64
  (:func:`pack_floats`): exact too, smaller and much faster to write than their decimal text.
* Data times are ISO 8601 with their UTC offset (readings carry fixed offsets), dates ISO 8601.
* A record of an older version is upgraded by :data:`MIGRATIONS` one version at a time before it is
  read; a newer or unknown version is a :class:`StateFormatError` (a worker never guesses).

Pickled records (before version 1) are not read by default, see :func:`unpickle_legacy`.

>>> decode_floats(pack_floats([0.1, 2.5, float("inf")]), "x")
[0.1, 2.5, inf]
>>> load_record(dump_record({"format": FORMAT, "version": VERSION, "a": 0.1}))["a"]
0.1
>>> load_record(zlib.compress(b'{"format": "elderwatch.monitor", "version": 99}'))
Traceback (most recent call last):
...
detectors.state.StateFormatError: state version 99 is newer than this code reads (1)
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import pickle
import struct
import sys
import zlib
from array import array as _array
from collections import deque
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson

#: The record's ``format`` field.
FORMAT = "elderwatch.monitor"
#: The version :func:`dump_record` writes. Raise it with every change to what a record holds, and add
#: the migration from the previous version to :data:`MIGRATIONS` (and a recorded old state to
#: ``tests/fixtures/state/``).
VERSION = 1


class StateFormatError(ValueError):
    """A state record this code cannot read: not the format, a version it does not know, a field
    missing or of the wrong type, or a pickled record not allowed to load. The detect stage counts it
    and starts the household afresh."""


class LegacyPickleState(StateFormatError):
    """A pickled record (written before state format version 1), and unpickling was not allowed."""


#: version -> the function that turns a record of that version into one of version + 1.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


def migrate(record: dict, migrations: dict[int, Callable[[dict], dict]] | None = None,
            current: int | None = None) -> dict:
    """``record`` upgraded to ``current`` (default :data:`VERSION`) one version at a time."""
    migrations = MIGRATIONS if migrations is None else migrations
    current = VERSION if current is None else current
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StateFormatError(f"not an {FORMAT} state record")
    version = record.get("version")
    if type(version) is not int or version < 1:
        raise StateFormatError(f"state version {version!r} is not a version")
    if version > current:
        raise StateFormatError(f"state version {version} is newer than this code reads ({current})")
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise StateFormatError(f"no migration from state version {version}")
        record = step(record)
        if not isinstance(record, dict) or record.get("version") != version + 1:
            raise StateFormatError(f"the migration from state version {version} did not give version {version + 1}")
        version += 1
    return record


def dump_record(record: dict) -> bytes:
    """``zlib(compact JSON)`` of ``record``. Written for every reading a household gets, so it is made cheap:

    * orjson, not :mod:`json`: it writes a new household's record in 13 µs against 100 µs, one with 60 days
      learned in 25 against 220 µs (the whole :meth:`~detectors.monitor.HouseholdMonitor.dumps` is timed by
      ``python -m bench.bench_detect_speed``). orjson writes a non-finite float as
      ``null`` where :mod:`json` refused it: the record's readers then reject it (a number is never ``null``),
      and the detector conformance suite checks that no detector keeps one;
    * zlib level 1: level 6 is a few % smaller and twice the time.

    >>> zlib.decompress(dump_record({"a": [1, 0.5, None, "b"]}))
    b'{"a":[1,0.5,null,"b"]}'
    """
    return zlib.compress(orjson.dumps(record), 1)


def load_record(data: bytes, *, migrations: dict[int, Callable[[dict], dict]] | None = None,
                current: int | None = None) -> dict:
    """The record in ``data``, upgraded to the current version; :class:`StateFormatError` if unreadable."""
    try:
        text = zlib.decompress(data)
    except (zlib.error, TypeError) as exc:
        raise StateFormatError(f"not a compressed state record ({type(exc).__name__})") from None
    if text[:1] == b"\x80":
        raise LegacyPickleState("pickled state record (written before state format version 1): not loaded")
    try:
        record = orjson.loads(text)  # NaN and Infinity are not JSON: refused, as a damaged record
    except (ValueError, RecursionError) as exc:
        raise StateFormatError(f"state record is not JSON ({type(exc).__name__})") from None
    return migrate(record, migrations, current)


# -- reading fields, with their types checked ------------------------------------------------------

def fail(where: str, expected: str, value: Any) -> StateFormatError:
    return StateFormatError(f"{where}: expected {expected}, got {type(value).__name__}")


def entry(state: Any, key: str, where: str) -> Any:
    if not isinstance(state, dict):
        raise fail(where, "an object", state)
    try:
        return state[key]
    except KeyError:
        raise StateFormatError(f"{where}: missing {key!r}") from None


def number(value: Any, where: str) -> int | float:
    """An int or a float, kept as it is (a parameter given as 14 stays 14: it may be printed)."""
    if type(value) is float or type(value) is int:
        return value
    raise fail(where, "a number", value)


#: Parameters every household has (90.0 days, a fading factor of 0.01, windows (30, 60, 120, 240), its sleep
#: hours) as one object each, not one per household. Floats (not 0.0, equal to -0.0 but written differently),
#: tuples and frozensets of ints only, each in its own table: a lookup never gives 1 for 1.0. Bounded: past
#: this many, values are kept as they are.
_SHARED_FLOATS: dict[float, float] = {}
_SHARED_TUPLES: dict[tuple, tuple] = {}
_SHARED_SETS: dict[frozenset, frozenset] = {}
_MAX_SHARED = 4096


def shared(value: Any) -> Any:
    """``value``, or an identical one (same type, same digits) already in memory. For parameters."""
    if type(value) is float:
        table = _SHARED_FLOATS
        if not value:
            return value
    elif type(value) is tuple and all(type(v) is int for v in value):
        table = _SHARED_TUPLES
    elif type(value) is frozenset and all(type(v) is int for v in value):
        table = _SHARED_SETS
    else:
        return value
    kept = table.get(value)
    if kept is None and len(table) < _MAX_SHARED:
        kept = table[value] = value
    return value if kept is None else kept


def integer(value: Any, where: str) -> int:
    if type(value) is int:
        return value
    raise fail(where, "an integer", value)


def real(value: Any, where: str) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise fail(where, "a number", value)


def boolean(value: Any, where: str) -> bool:
    if type(value) is bool:
        return value
    raise fail(where, "true or false", value)


def text(value: Any, where: str) -> str:
    if type(value) is str:
        return value
    raise fail(where, "a string", value)


def array(value: Any, where: str, length: int | None = None) -> list:
    if type(value) is not list:
        raise fail(where, "a list", value)
    if length is not None and len(value) != length:
        raise StateFormatError(f"{where}: expected {length} items, got {len(value)}")
    return value


def optional(read: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def read_optional(value: Any, where: str) -> Any:
        return None if value is None else read(value, where)
    return read_optional


def encode_datetime(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def decode_datetime(value: Any, where: str) -> datetime:
    try:
        ts = _datetime(text(value, where))
    except ValueError:
        raise StateFormatError(f"{where}: not an ISO 8601 time") from None
    if ts.utcoffset() is None:
        raise StateFormatError(f"{where}: a time without a UTC offset")
    return ts


# A record holds the same instant several times (each detector's first reading, a meter's last one), and
# households' last readings share the readings' times: the same text gives the same (immutable) object.
_datetime = functools.lru_cache(maxsize=64)(datetime.fromisoformat)


def encode_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def decode_date(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(text(value, where))
    except ValueError:
        raise StateFormatError(f"{where}: not an ISO 8601 date") from None


_LITTLE_ENDIAN = sys.byteorder == "little"


def pack_floats(values: list[float]) -> str:
    """Floats as base64 little-endian doubles: exact, and 12 characters each whatever their digits.
    An ``array('d')`` (how the hourly tables are kept in memory) is written from its buffer: the same bytes."""
    if type(values) is _array and values.typecode == "d" and _LITTLE_ENDIAN:
        return base64.b64encode(values).decode("ascii")
    return base64.b64encode(struct.pack(f"<{len(values)}d", *values)).decode("ascii")


def decode_floats(value: Any, where: str, length: int | None = None) -> list[float]:
    try:
        raw = base64.b64decode(text(value, where), validate=True)
    except (binascii.Error, ValueError):
        raise StateFormatError(f"{where}: not base64") from None
    if len(raw) % 8 or (length is not None and len(raw) != 8 * length):
        raise StateFormatError(f"{where}: expected {length if length is not None else 'whole'} doubles")
    return list(struct.unpack(f"<{len(raw) // 8}d", raw))


def decode_float_array(value: Any, where: str, length: int | None = None) -> _array:
    """:func:`decode_floats` as an ``array('d')``: 8 bytes a float in memory, where a list holds a
    24-byte float object and an 8-byte pointer per value (the hourly tables are most of a monitor's memory)."""
    try:
        raw = base64.b64decode(text(value, where), validate=True)
    except (binascii.Error, ValueError):
        raise StateFormatError(f"{where}: not base64") from None
    if len(raw) % 8 or (length is not None and len(raw) != 8 * length):
        raise StateFormatError(f"{where}: expected {length if length is not None else 'whole'} doubles")
    floats = _array("d", raw)
    if not _LITTLE_ENDIAN:
        floats.byteswap()
    return floats


def integer_array(value: Any, where: str, length: int | None = None) -> _array:
    """Integers (0 to 2**32 - 1) as an ``array('I')``: counts per hour, 4 bytes each, not an int object each."""
    values = [integer(v, where) for v in array(value, where, length)]
    try:
        return _array("I", values)
    except OverflowError:
        raise StateFormatError(f"{where}: an integer out of range") from None


def numbers(value: Any, where: str) -> list:
    return [number(v, where) for v in array(value, where)]


# -- pickled records of before version 1 -----------------------------------------------------------

#: What a pickled state of before version 1 may name: our state classes and the few standard ones
#: they hold. Anything else (``os.system``, ``builtins.eval``, ...) is refused before it is looked up.
PICKLE_ALLOWED = frozenset({
    ("detectors.monitor", "HouseholdMonitor"), ("detectors.monitor", "MonitorConfig"), ("detectors.monitor", "_Series"),
    ("detectors.inactivity", "InactivityDetector"), ("detectors.continuous_flow", "ContinuousFlowDetector"),
    ("detectors.surge", "SurgeDetector"), ("detectors.night_activity", "NightActivityDetector"),
    ("detectors.meter_offline", "MeterOfflineDetector"), ("detectors.decline", "DeclineDetector"),
    ("detectors.rhythm", "FadingMean"), ("detectors.rhythm", "HourlyMean"), ("detectors.rhythm", "HourlyPower"),
    ("detectors.rhythm", "DecayingMax"), ("detectors.rhythm", "DecayingTopK"), ("detectors.rhythm", "Switches"),
    ("detectors.rhythm", "HourlyTopK"), ("detectors.rhythm", "Steps"), ("detectors.rhythm", "DecayingMaxima"),
    ("detectors.usage", "RecentUsage"), ("detectors.usage", "_MeterUsage"), ("detectors.feedback", "FeedbackLog"),
    ("schemas.anomaly", "AnomalyKind"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("collections", "deque"), ("builtins", "set"), ("builtins", "frozenset"),
})


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PICKLE_ALLOWED:
            raise StateFormatError(f"pickled state names {module}.{name}, which a state may not hold")
        return super().find_class(module, name)


def unpickle_legacy(data: bytes) -> Any:
    """A pickled record of before version 1, unpickled with only :data:`PICKLE_ALLOWED` classes.

    Used only when the operator opts in (the detect stage's ``migrate_pickled`` flag): an allow-list
    stops a record from naming a function to call, but unpickling still runs our classes' own
    ``__setstate__`` on whatever the record holds, so by default a pickled record is not read at all."""
    try:
        return _AllowListUnpickler(io.BytesIO(zlib.decompress(data))).load()
    except StateFormatError:
        raise
    except Exception as exc:  # a truncated or corrupt pickle raises almost anything
        raise StateFormatError(f"unreadable pickled state ({type(exc).__name__})") from None


# -- codecs: how one attribute is written and read back ----------------------------------------------

class Codec:
    """``encode(value) -> JSON value`` and ``decode(JSON value, where) -> value`` (checked) for one attribute."""

    __slots__ = ("encode", "decode")

    def __init__(self, encode: Callable[[Any], Any], decode: Callable[[Any, str], Any]) -> None:
        self.encode, self.decode = encode, decode


def _same(value: Any) -> Any:
    return value


NUMBER = Codec(_same, number)
INTEGER = Codec(_same, integer)
BOOLEAN = Codec(_same, boolean)
DATETIME = Codec(encode_datetime, optional(decode_datetime))  # None allowed
DATE = Codec(encode_date, optional(decode_date))               # None allowed


def nullable(codec: Codec) -> Codec:
    encode, decode = codec.encode, codec.decode
    return Codec(lambda v: None if v is None else encode(v), lambda v, where: None if v is None else decode(v, where))


def state_of(cls: Any) -> Codec:
    """An object with ``to_state()`` and ``from_state(state, where)``."""
    return Codec(lambda v: v.to_state(), cls.from_state)


def list_of(codec: Codec) -> Codec:
    encode, decode = codec.encode, codec.decode
    return Codec(lambda values: [encode(v) for v in values],
                 lambda value, where: [decode(v, where) for v in array(value, where)])


def pair(first: Codec, second: Codec) -> Codec:
    """A 2-tuple, written as a 2-list."""
    return Codec(lambda v: [first.encode(v[0]), second.encode(v[1])],
                 lambda value, where: (lambda a, b: (first.decode(a, where), second.decode(b, where)))(
                     *array(value, where, 2)))


def deque_of(codec: Codec) -> Codec:
    items = list_of(codec)
    return Codec(items.encode, lambda value, where: deque(items.decode(value, where)))


def frozenset_of(codec: Codec) -> Codec:
    items = list_of(codec)
    return Codec(lambda v: items.encode(sorted(v)), lambda value, where: frozenset(items.decode(value, where)))


def meter_map(codec: Codec) -> Codec:
    """A dict keyed by meter name."""
    encode, decode = codec.encode, codec.decode

    def decode_map(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise fail(where, "an object", value)
        return {sys.intern(text(k, where)): decode(v, f"{where}.{k}") for k, v in value.items()}
    return Codec(lambda values: {k: encode(v) for k, v in values.items()}, decode_map)


NUMBERS = list_of(NUMBER)
FLOATS = Codec(pack_floats, decode_floats)
