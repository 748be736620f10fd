"""The exported JSON Schema is the contract of both doors (``readings.raw`` and ``POST /api/v1/readings``):
a standard validator and ingest's ``parse_raw`` give the same verdict on every payload of a corpus of
good and bad readings (both forms, both ways of naming the household).

The schema judges JSON documents, so a payload that is not one (not UTF-8, not JSON, ``NaN`` or
``Infinity``, an integer of more digits than Python reads) is refused before the validator sees it,
exactly as ``parse_raw`` refuses it.

Deliberate differences, which a JSON Schema cannot express, are listed in :data:`DIFFERENCES` with
their reasons; the test checks that those payloads do differ in exactly that way, so the list
cannot go stale.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from jsonschema import Draft202012Validator

from schemas.export import reading_schema
from streams.ingest.parse import Parsed, parse_raw

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

INTERVAL = {"household_id": "hh-1", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 3.5}
REGISTER = {"household_id": "hh-1", "meter": "electricity", "ts": "2026-03-01T07:15:00+08:00", "register": 41.0}
BY_METER = {"utility_id": "aqua-north", "meter_id": "WM-0042"}
_DROP = object()


def msg(base: dict, **changes) -> bytes:
    data = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


def by_meter(base: dict, **changes) -> bytes:
    return msg(base, **{"household_id": _DROP, **BY_METER, **changes})


# (id, payload): the verdict is not written here: the schema and ingest must agree on it.
GOOD = [
    ("interval-by-household", msg(INTERVAL)),
    ("interval-full", msg(INTERVAL, ts="2026-03-01T07:15:00+01:00", unit="m3", value=0.0125, interval_s=900,
                          reading_id="r-1", utility_id="aqua-north", schema_version=1)),
    ("register-by-household", msg(REGISTER)),
    ("register-rollover-Wh", msg(REGISTER, unit="Wh", register=99_000, rollover_at=100_000)),
    ("interval-by-meter", by_meter(INTERVAL)),
    ("register-by-meter", by_meter(REGISTER)),
    ("ids-with-colon-and-slash", by_meter(INTERVAL, utility_id="grid:east", meter_id="EM/7:1")),
    ("lowercase-t-and-z", msg(INTERVAL, ts="2026-03-01t07:15:00z")),
    ("nanosecond-fraction", msg(INTERVAL, ts="2026-03-01T07:15:00.123456789-05:30")),
    ("minus-00-00", msg(INTERVAL, ts="2026-03-01T07:15:00-00:00")),
    ("nulls-for-optional-fields", msg(INTERVAL, unit=None, reading_id=None, interval_s=None, meter_id=None)),
    ("null-household-by-meter", by_meter(INTERVAL, household_id=None)),
    ("value-zero-int", msg(INTERVAL, value=0)),
    ("interval-s-integral-float", msg(INTERVAL, interval_s=900.0)),
    ("schema-version-1.0", msg(INTERVAL, schema_version=1.0)),
]

BAD = [
    # not a JSON document at all
    ("garbage", b"meter=water;value=3"),
    ("truncated", msg(INTERVAL)[:-3]),
    ("not-utf8", b'{"household_id": "\xff"}'),
    ("nan-literal", msg(INTERVAL).replace(b"3.5", b"NaN")),
    ("infinity-literal", msg(INTERVAL).replace(b"3.5", b"-Infinity")),
    ("overflowing-number", msg(INTERVAL).replace(b"3.5", b"1e999")),
    ("array", b"[1, 2]"),
    ("null", b"null"),
    # the form
    ("value-and-register", msg(INTERVAL, register=4.0)),
    ("neither-value-nor-register", msg(INTERVAL, value=_DROP)),
    ("typo-vaule", msg(INTERVAL, value=_DROP, vaule=3.5)),
    ("unknown-field", by_meter(REGISTER, colour="blue")),
    # naming the household
    ("no-household-no-meter", msg(INTERVAL, household_id=_DROP)),
    ("utility-without-meter-id", msg(INTERVAL, household_id=_DROP, utility_id="aqua-north")),
    ("meter-id-without-utility", msg(INTERVAL, household_id=_DROP, meter_id="WM-0042")),
    ("household-and-meter-id", msg(INTERVAL, **BY_METER)),
    ("household-null-meter-null", msg(INTERVAL, household_id=None, meter_id=None)),
    ("household-with-space", msg(INTERVAL, household_id="Maria Garcia")),
    ("household-trailing-newline", msg(INTERVAL, household_id="hh-1\n")),
    ("household-number", msg(INTERVAL, household_id=17)),
    ("household-too-long", msg(INTERVAL, household_id="h" * 65)),
    ("meter-id-with-space", by_meter(INTERVAL, meter_id="WM 42")),
    ("meter-id-trailing-newline", by_meter(REGISTER, meter_id="WM-42\n")),
    ("utility-id-too-long", by_meter(INTERVAL, utility_id="u" * 65)),
    ("meter-id-empty", by_meter(INTERVAL, meter_id="")),
    # meter kind
    ("meter-gas", msg(INTERVAL, meter="gas")),
    ("meter-wrong-case", by_meter(INTERVAL, meter="Water")),
    ("meter-missing", msg(REGISTER, meter=_DROP)),
    # ts: RFC 3339 with an offset, nothing else
    ("ts-missing", msg(INTERVAL, ts=_DROP)),
    ("ts-naive", msg(INTERVAL, ts="2026-03-01T07:15:00")),
    ("ts-date-only", by_meter(INTERVAL, ts="2026-03-01")),
    ("ts-epoch-seconds", msg(INTERVAL, ts=1772348100)),
    ("ts-epoch-millis-register", msg(REGISTER, ts=1772348100000)),
    ("ts-epoch-in-a-string", msg(INTERVAL, ts="1772348100")),
    ("ts-plus-0800", msg(INTERVAL, ts="2026-03-01T07:15:00+0800")),
    ("ts-plus-08", by_meter(INTERVAL, ts="2026-03-01T07:15:00+08")),
    ("ts-no-seconds", msg(INTERVAL, ts="2026-03-01T07:15Z")),
    ("ts-space-separator", msg(INTERVAL, ts="2026-03-01 07:15:00Z")),
    ("ts-leap-second", msg(INTERVAL, ts="2026-03-01T07:15:60Z")),
    ("ts-trailing-newline", msg(INTERVAL, ts="2026-03-01T07:15:00Z\n")),
    ("ts-feb-30", msg(INTERVAL, ts="2026-02-30T07:15:00Z")),
    ("ts-offset-24h", msg(INTERVAL, ts="2026-03-01T07:15:00+24:00")),
    ("ts-1970", msg(INTERVAL, ts="1970-01-01T00:00:00Z")),
    ("ts-non-ascii-digits", msg(INTERVAL, ts="٢٠٢٦-03-01T07:15:00Z")),
    ("ts-bool", msg(INTERVAL, ts=True)),
    ("ts-words", msg(INTERVAL, ts="yesterday")),
    # numbers
    ("value-string", msg(INTERVAL, value="12")),
    ("value-true", msg(INTERVAL, value=True)),
    ("value-null", msg(INTERVAL, value=None)),
    ("value-negative", by_meter(INTERVAL, value=-0.5)),
    ("value-above-max", msg(INTERVAL, value=1e10)),
    ("value-huge-int", msg(INTERVAL, value=10**400)),
    ("register-negative", msg(REGISTER, register=-1)),
    ("register-string", by_meter(REGISTER, register="41")),
    ("rollover-zero", msg(REGISTER, rollover_at=0)),
    ("rollover-on-interval", msg(INTERVAL, rollover_at=100.0)),
    ("interval-s-zero", msg(INTERVAL, interval_s=0)),
    ("interval-s-fraction", msg(INTERVAL, interval_s=1.5)),
    ("interval-s-true", msg(INTERVAL, interval_s=True)),
    ("interval-s-string", msg(INTERVAL, interval_s="900")),
    ("interval-s-over-31-days", msg(INTERVAL, interval_s=31 * 86400 + 1)),
    # units, per meter
    ("unit-gallon", msg(INTERVAL, unit="gallon")),
    ("unit-kWh-on-water", msg(INTERVAL, unit="kWh")),
    ("unit-m3-on-electricity", by_meter(REGISTER, unit="m3")),
    ("unit-number", msg(INTERVAL, unit=3)),
    # the rest
    ("reading-id-empty", msg(INTERVAL, reading_id="")),
    ("schema-version-2", msg(INTERVAL, schema_version=2)),
    ("schema-version-true", msg(INTERVAL, schema_version=True)),
    ("schema-version-string", msg(INTERVAL, schema_version="1")),
]

#: Payloads on which the schema and ingest differ on purpose: what a schema cannot express.
DIFFERENCES = {
    # The ingest clock: a reading more than ELDERWATCH_MAX_FUTURE_S ahead of now is refused
    # (future_timestamp). A schema has no clock.
    "ts-future": (msg(INTERVAL, ts="2026-03-01T14:00:00Z"), "schema accepts, ingest refuses"),
    # Nothing before 2000-01-01T00:00:00Z: the schema's pattern requires the year 2000 or later as
    # written, which is the same rule except in the first hours of 2000-01-01 east of UTC (still 1999
    # in UTC). A pattern cannot compare instants.
    "ts-2000-local-1999-utc": (msg(INTERVAL, ts="2000-01-01T00:30:00+01:00"), "schema accepts, ingest refuses"),
}

CORPUS = GOOD + BAD


def strict_json(payload: bytes):
    """The JSON document in ``payload``, or ValueError: UTF-8, RFC 8259 (no NaN or Infinity)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(payload.decode("utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = reading_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_accepts(validator: Draft202012Validator, payload: bytes) -> bool:
    try:
        document = strict_json(payload)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError too
        return False
    return validator.is_valid(document)


def ingest_accepts(payload: bytes) -> bool:
    return isinstance(parse_raw(payload, now=NOW), Parsed)


def test_corpus_is_big_and_covers_both_forms_and_both_id_styles():
    assert len(CORPUS) >= 40
    names = [name for name, _ in CORPUS]
    assert len(set(names)) == len(names)
    documents = [strict_json(p) for _, p in GOOD]
    assert any("value" in d and "meter_id" in d for d in documents)
    assert any("register" in d and "meter_id" in d for d in documents)
    assert any("value" in d and "household_id" in d for d in documents)
    assert any("register" in d and "household_id" in d for d in documents)


@pytest.mark.parametrize(("payload", "accepted"), [(p, True) for _, p in GOOD] + [(p, False) for _, p in BAD],
                         ids=[f"good:{n}" for n, _ in GOOD] + [f"bad:{n}" for n, _ in BAD])
def test_schema_and_ingest_agree(validator, payload, accepted):
    assert schema_accepts(validator, payload) is accepted, "the JSON Schema's verdict"
    assert ingest_accepts(payload) is accepted, parse_raw(payload, now=NOW)


@pytest.mark.parametrize("name", sorted(DIFFERENCES))
def test_listed_differences_are_real(validator, name):
    payload, how = DIFFERENCES[name]
    assert how == "schema accepts, ingest refuses"
    assert schema_accepts(validator, payload) and not ingest_accepts(payload)


def test_the_exported_file_is_the_schema_tested(tmp_path):
    from schemas.export import RAW_READING_FILENAME, export_json_schemas

    export_json_schemas(tmp_path)
    exported = json.loads((tmp_path / RAW_READING_FILENAME).read_text())
    assert {k: v for k, v in exported.items() if k not in ("$schema", "$id")} == reading_schema()
