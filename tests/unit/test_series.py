"""Timelines for every rule of ``streams.ingest.series`` (see its module docstring)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from schemas.dead_letter import RejectReason
from schemas.readings import Meter, MeterReading, MeterRegisterReading
from streams.ingest.parse import Rejection
from streams.ingest.series import Duplicate, Emitted, IngestLimits, RegisterBaseline, SeriesState, accept_reading

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
LIMITS = IngestLimits()


def at(minutes: float = 0, **kw) -> datetime:
    return T0 + timedelta(minutes=minutes, **kw)


def iv(ts: datetime, value: float, interval_s: int | None = 900, meter: str = "water") -> MeterReading:
    return MeterReading(household_id="hh-1", meter=meter, ts=ts, value=value, interval_s=interval_s)


def rg(ts: datetime, register: float, rollover_at: float | None = None, meter: str = "water") -> MeterRegisterReading:
    return MeterRegisterReading(household_id="hh-1", meter=meter, ts=ts, register=register, rollover_at=rollover_at)


# Outcome descriptors: ("emit", value, flags, interval_s) | ("dup",) | ("base", reason) | ("reject", reason)
def E(value, flags=(), interval_s=None):  # noqa: N802
    return ("emit", value, tuple(flags), interval_s)


DUP = ("dup",)


def B(reason):  # noqa: N802
    return ("base", reason)


def R(reason):  # noqa: N802
    return ("reject", reason)


def describe(outcome):
    if isinstance(outcome, Emitted):
        return ("emit", outcome.reading.value, outcome.reading.flags, outcome.reading.interval_s)
    if isinstance(outcome, Duplicate):
        return DUP
    if isinstance(outcome, RegisterBaseline):
        return B(outcome.reason)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.detail
    return R(outcome.reason)


def matches(got, want) -> bool:
    if want[0] != got[0]:
        return False
    if want[0] == "emit":
        _, value, flags, interval_s = want
        return (got[1] == pytest.approx(value) and got[2] == flags
                and (interval_s is None or got[3] == interval_s))
    return got == want


TIMELINES = {
    # 1. too late: older than newest - 48 h -> too_late, even if it would be a duplicate
    "too-late-beyond-horizon": [
        (iv(at(hours=50), 1.0), E(1.0)),
        (iv(at(hours=1), 2.0), R(RejectReason.TOO_LATE)),
        (iv(at(hours=2), 2.0), E(2.0)),                           # exactly at newest - 48 h: still accepted
    ],
    "too-late-beats-duplicate": [
        (iv(at(0), 1.0), E(1.0)),
        (iv(at(hours=49), 1.0), E(1.0)),
        (iv(at(0), 1.0), R(RejectReason.TOO_LATE)),               # was seen, but no longer remembered
    ],
    # 2. duplicate: same ts within horizon, value not compared, even out of order
    "duplicate-same-ts": [
        (iv(at(15), 1.0), E(1.0)),
        (iv(at(15), 9.0), DUP),
    ],
    "duplicate-out-of-order-within-horizon": [
        (iv(at(15), 1.0), E(1.0)),
        (iv(at(30), 1.0), E(1.0)),
        (iv(at(45), 1.0), E(1.0)),
        (iv(at(15), 1.0), DUP),
        (iv(at(hours=40), 1.0), E(1.0)),
        (iv(at(30), 1.0), DUP),
    ],
    "duplicate-same-instant-other-offset": [
        (iv(at(60), 1.0), E(1.0)),
        (iv(at(60).astimezone(timezone(timedelta(hours=2))), 1.0), DUP),
    ],
    # 3. interval: late but inside the horizon is fine; plausibility by max_per_hour x interval
    "late-within-horizon-accepted": [
        (iv(at(hours=30), 1.0), E(1.0)),
        (iv(at(hours=1), 2.0), E(2.0)),
        (iv(at(minutes=1), 3.0), E(3.0)),
    ],
    "interval-implausible": [
        (iv(at(15), 900.0, interval_s=900), E(900.0)),            # 3600 L/h x 15 min exactly
        (iv(at(30), 900.5, interval_s=900), R(RejectReason.IMPLAUSIBLE_VALUE)),
        (iv(at(45), 50_000.0, interval_s=None), E(50_000.0)),     # unknown interval: judged over a day
        (iv(at(60), 86_401.0, interval_s=None), R(RejectReason.IMPLAUSIBLE_VALUE)),
        (iv(at(75), 61.0, interval_s=4), E(61.0)),                # short interval judged over 15 min
        (iv(at(90), 61.0, interval_s=4, meter="electricity"), R(RejectReason.IMPLAUSIBLE_VALUE)),  # 60 kWh/h
    ],
    # 4. registers
    "register-first-is-baseline": [
        (rg(at(0), 1000.0), B("first")),
    ],
    "register-rise": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(15), 1012.5), E(12.5, interval_s=900)),
        (rg(at(30), 1012.5), E(0.0, interval_s=900)),
    ],
    "register-irregular-interval": [
        (rg(at(0, seconds=55), 100.0), B("first")),
        (rg(at(60, seconds=43), 130.0), E(30.0, interval_s=3588)),
        (rg(at(61), 131.0), E(1.0, interval_s=17)),
    ],
    "register-rollover": [
        (rg(at(0), 99_950.0, rollover_at=100_000.0), B("first")),
        (rg(at(15), 30.0, rollover_at=100_000.0), E(80.0, flags=["register_rollover"])),
        (rg(at(30), 70.0, rollover_at=100_000.0), E(40.0)),
    ],
    "register-fall-without-rollover-info-is-reset": [
        (rg(at(0), 99_950.0), B("first")),
        (rg(at(15), 30.0), B("reset")),
        (rg(at(30), 70.0), E(40.0)),
    ],
    "register-readback-keeps-high-water-mark": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(60), 1012.5), E(12.5)),
        (rg(at(120), 1011.0), E(0.0, flags=["register_readback"], interval_s=3600)),
        (rg(at(180), 1013.0), E(0.5, interval_s=3600)),          # from 1012.5, not from 1011
    ],
    "register-readback-at-tolerance": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(15), 500.0), E(0.0, flags=["register_readback"])),  # fall of exactly 500 L
        (rg(at(30), 1001.0), E(1.0)),
    ],
    "register-large-fall-is-reset": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(15), 499.0), B("reset")),                          # fall of 501 L
        (rg(at(30), 510.0), E(11.0)),                             # measured from the new baseline
    ],
    "register-electricity-tolerance": [
        (rg(at(0), 100.0, meter="electricity"), B("first")),
        (rg(at(15), 95.0, meter="electricity"), E(0.0, flags=["register_readback"])),
        (rg(at(30), 89.0, meter="electricity"), B("reset")),
    ],
    "register-out-of-order": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(60), 1010.0), E(10.0)),
        (rg(at(30), 1005.0), R(RejectReason.REGISTER_OUT_OF_ORDER)),
        (rg(at(30), 1005.0), R(RejectReason.REGISTER_OUT_OF_ORDER)),  # not remembered: not a duplicate
        (rg(at(90), 1020.0), E(10.0, interval_s=1800)),
    ],
    "register-implausible-moves-baseline": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(60), 1_000_000.0), R(RejectReason.IMPLAUSIBLE_VALUE)),
        (rg(at(120), 1_000_010.0), E(10.0, interval_s=3600)),    # not poisoned: measured from the garbage read
    ],
    "register-min-rate-window": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(0, seconds=4), 1061.0), E(61.0, interval_s=4)),   # 61 L in 4 s: jitter, not a burst
        (rg(at(0, seconds=8), 1961.0), E(900.0, interval_s=4)),  # 900 L = 3600 L/h x 15 min
        (rg(at(0, seconds=12), 2862.0), R(RejectReason.IMPLAUSIBLE_VALUE)),  # 901 L
    ],
    "register-rate-over-long-gap": [
        (rg(at(0), 0.0), B("first")),
        (rg(at(hours=2), 7200.0), E(7200.0, interval_s=7200)),
        (rg(at(hours=3), 10_801.0), R(RejectReason.IMPLAUSIBLE_VALUE)),
    ],
    "register-duplicate": [
        (rg(at(0), 1000.0), B("first")),
        (rg(at(0), 1000.0), DUP),
        (rg(at(15), 1001.0), E(1.0)),
        (rg(at(15), 2000.0), DUP),                                # value not compared
    ],
}


def run(timeline, state=None, limits=LIMITS):
    state = state or SeriesState()
    return [describe(accept_reading(state, reading, limits)) for reading, _ in timeline], state


@pytest.mark.parametrize("name", list(TIMELINES))
def test_timeline(name):
    timeline = TIMELINES[name]
    got, _ = run(timeline)
    for step, ((_, want), outcome) in enumerate(zip(timeline, got)):
        assert matches(outcome, want), f"step {step}: expected {want}, got {outcome}"


def test_emitted_reading_fields():
    state = SeriesState()
    accept_reading(state, MeterRegisterReading(household_id="hh-9", meter="electricity", ts=at(0), register=10.0,
                                               reading_id="r1", utility_id="u1"), LIMITS)
    out = accept_reading(state, MeterRegisterReading(household_id="hh-9", meter="electricity", ts=at(30),
                                                     register=10.25, reading_id="r2", utility_id="u1"), LIMITS)
    r = out.reading
    assert (r.household_id, r.meter, r.ts, r.source, r.reading_id, r.utility_id) == (
        "hh-9", Meter.ELECTRICITY, at(30), "register", "r2", "u1")
    assert r.value == pytest.approx(0.25) and r.interval_s == 1800
    interval = accept_reading(SeriesState(), iv(at(0), 2.0, interval_s=None), LIMITS).reading
    assert interval.source == "interval" and interval.interval_s is None and interval.flags == ()


def test_custom_limits_are_used():
    limits = IngestLimits(dedup_horizon=timedelta(hours=1), max_per_hour={Meter.WATER: 10.0, Meter.ELECTRICITY: 1.0},
                          readback_tolerance={Meter.WATER: 1.0, Meter.ELECTRICITY: 0.1})
    got, _ = run([(iv(at(120), 1.0), None), (iv(at(0), 1.0), None), (iv(at(135), 2.6, interval_s=900), None)],
                 limits=limits)
    assert got == [("emit", 1.0, (), 900), R(RejectReason.TOO_LATE), R(RejectReason.IMPLAUSIBLE_VALUE)]
    got, _ = run([(rg(at(0), 100.0), None), (rg(at(15), 98.0), None)], limits=limits)
    assert got[1] == B("reset")  # a 2 L fall exceeds the 1 L tolerance


# --- state: JSON round trip and bounded size -------------------------------------------------------

@pytest.mark.parametrize("name", list(TIMELINES))
def test_json_round_trip_preserves_behaviour(name):
    """Serialising the state after every step (as the changelog does) changes no outcome."""
    timeline = TIMELINES[name]
    straight, end_state = run(timeline)
    state = SeriesState()
    via_json = []
    for reading, _ in timeline:
        via_json.append(describe(accept_reading(state, reading, LIMITS)))
        state = SeriesState.from_json(json.loads(json.dumps(state.to_json())))
    assert via_json == straight
    assert state == end_state


def test_json_round_trip_of_empty_and_missing_state():
    assert SeriesState.from_json(None) == SeriesState()
    assert SeriesState.from_json({}) == SeriesState()
    assert SeriesState.from_json(json.loads(json.dumps(SeriesState().to_json()))) == SeriesState()


def test_json_stores_regular_timestamps_as_one_run():
    state = SeriesState()
    for m in (0, 15, 30):
        accept_reading(state, rg(at(m), 100.0 + m), LIMITS)
    accept_reading(state, rg(at(37), 140.0), LIMITS)  # an irregular read starts a new run
    data = state.to_json()
    first, newest = int(at(0).timestamp() * 1000), int(at(37).timestamp() * 1000)
    assert data == {"n": newest, "t": [[first, 900_000, 3], [newest, 0, 1]], "r": 140.0, "rt": newest}
    assert SeriesState.from_json(data) == state


def test_horizon_pruning_keeps_state_bounded():
    state = SeriesState()
    bound = LIMITS.dedup_horizon // timedelta(minutes=15) + 1
    largest = 0
    for i in range(10_000):
        out = accept_reading(state, iv(at(15 * i), 1.0), LIMITS)
        assert isinstance(out, Emitted)
        largest = max(largest, len(state.recent_ms))
    assert largest <= bound
    assert len(state.recent_ms) == bound  # full window: newest - 48 h .. newest inclusive
    assert state.recent_ms == sorted(state.recent_ms)
    assert len(json.dumps(state.to_json())) < 200  # a full regular horizon is one run
    # the oldest remembered reading is still recognised, one older is too late
    assert accept_reading(state, iv(at(15 * (9999 - 192)), 1.0), LIMITS) == Duplicate()
    assert accept_reading(state, iv(at(15 * (9999 - 193)), 1.0), LIMITS).reason is RejectReason.TOO_LATE


def test_pruning_with_out_of_order_arrivals_is_bounded():
    state = SeriesState()
    for i in range(2_000):
        # pairs arrive swapped: 1, 0, 3, 2, ...
        j = i + 1 if i % 2 == 0 else i - 1
        accept_reading(state, iv(at(15 * j), 1.0), LIMITS)
    assert len(state.recent_ms) <= LIMITS.dedup_horizon // timedelta(minutes=15) + 1
    assert state.recent_ms == sorted(state.recent_ms)


def test_corrected_resend_after_implausible_interval_is_accepted():
    state = SeriesState()
    assert accept_reading(state, iv(at(15), 1e6), LIMITS).reason is RejectReason.IMPLAUSIBLE_VALUE
    out = accept_reading(state, iv(at(15), 5.0), LIMITS)
    assert isinstance(out, Emitted) and out.reading.value == 5.0


def test_each_route_keeps_its_own_raw_offsets_so_a_rekeyed_reading_on_its_way_is_not_skipped():
    # Raw partition 0: offset 5 is keyed by a utility's batch id (re-keyed through readings.by-household),
    # offset 6 by the household (applied directly, before offset 5 has come back from by-household).
    state = SeriesState()
    state.note_applied_direct(0, 6)
    assert not state.applied_raw(0, 5), "the re-keyed reading at raw offset 5 must still be judged"
    state.note_applied(100, 0, 5)
    assert state.applied_direct(0, 6) and not state.applied_direct(0, 7)
    assert state.applied_raw(0, 5) and state.applied(100)
    restored = SeriesState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state and restored.direct_offsets == {0: 6}


def test_progress_grows_with_every_applied_message_on_either_route():
    state, seen = SeriesState(), []
    assert SeriesState.progress(state.to_json()) is None
    for step, (route, raw_offset) in enumerate([("direct", 3), ("rekeyed", 1), ("direct", 4), ("rekeyed", 2)]):
        if route == "direct":
            state.note_applied_direct(1, raw_offset)
        else:
            state.note_applied(10 + step, 0, raw_offset)
        seen.append(SeriesState.progress(state.to_json()))
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
