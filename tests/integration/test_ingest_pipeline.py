"""Ingest on the real broker: a messy utility feed in, exact counts out.

10,000 messages: interval readings from 40 households, cumulative registers from 10 more
(with a read-back and a meter reset), 5% malformed of every kind, and exact re-sends.
Expected counts are known by construction, not computed by the code under test.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

from conftest import consume, loads, produce, wait_for_counts

from streams.ingest import Emitted, OfflineIngest

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)
TOTAL = 10_000
MALFORMED = 500   # 5%
DUPLICATES = 300
REGISTER_HOUSEHOLDS = 10
REGISTER_READS = 200  # per register household -> 2,000 register messages


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def malformed_messages(rng: random.Random) -> list[tuple[bytes, str]]:
    """(payload, expected reason) — every kind of garbage a feed produces."""
    good = {"household_id": "hh-bad", "meter": "water", "ts": _iso(START), "value": 1.0}
    far_future = _iso(datetime.now(timezone.utc) + timedelta(days=400))

    def variant(**changes) -> bytes:
        payload = {**good, **changes}
        return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()

    makers = [
        (lambda i: b'{"household_id": "hh-1", "meter": "water", "ts": ', "not_json"),
        (lambda i: bytes(rng.randrange(256) for _ in range(20)) + b"\xff", "not_json"),
        (lambda i: b"[1, 2, 3]", "not_an_object"),
        (lambda i: variant(value="12"), "invalid_field"),
        (lambda i: variant(value=True), "invalid_field"),
        (lambda i: variant(meter="gas"), "unknown_meter_kind"),
        (lambda i: variant(value=-3.5), "negative_value"),
        (lambda i: variant().replace(b'"value": 1.0', b'"value": NaN'), "not_finite"),
        (lambda i: variant(ts="2026-03-02T07:15:00"), "naive_timestamp"),
        (lambda i: variant(ts=far_future), "future_timestamp"),
        (lambda i: variant(ts="yesterday"), "invalid_timestamp"),
        (lambda i: variant(household_id=...), "missing_field"),
        (lambda i: variant(value=..., register=..., ), "unknown_form"),
    ]
    return [(makers[i % len(makers)][0](i), makers[i % len(makers)][1]) for i in range(MALFORMED)]


def build_feed(seed: int = 7) -> tuple[list[tuple[bytes | None, bytes]], Counter, int]:
    rng = random.Random(seed)
    interval_msgs: list[tuple[bytes | None, bytes]] = []
    register_msgs: list[tuple[bytes | None, bytes]] = []
    baselines = 0
    # Registers: in order per household (same key -> same partition -> order kept).
    for h in range(REGISTER_HOUSEHOLDS):
        hh = f"hh-reg-{h:02d}"
        register = 1000.0 * (h + 1)
        baselines += 1  # the first read of every series
        for i in range(REGISTER_READS):
            ts = START + i * STEP + timedelta(seconds=rng.randrange(0, 60))  # irregular seconds
            if h == 0 and i == 100:
                register = 3.0  # meter replaced: a reset, a new baseline
                baselines += 1
            elif h == 1 and i == 50:
                register -= 2.0  # a read-back: emitted as 0, high-water mark kept
            else:
                register += rng.choice([0, 0, 0, 1.5, 6.0, 12.0])
            msg = {"household_id": hh, "meter": "water", "ts": _iso(ts), "register": register}
            register_msgs.append((hh.encode(), json.dumps(msg).encode()))
    # Intervals fill up the rest, leaving room for duplicates and malformed ones.
    n_interval = TOTAL - MALFORMED - DUPLICATES - len(register_msgs)
    households = [f"hh-{h:03d}" for h in range(40)]
    for i in range(n_interval):
        hh, meter = households[i % 40], ("water", "electricity")[(i // 40) % 2]
        ts = START + (i // 80) * STEP
        value = round(rng.uniform(0, 8), 2) if meter == "water" else round(rng.uniform(0.01, 0.6), 3)
        interval_msgs.append((hh.encode(), json.dumps({"household_id": hh, "meter": meter, "ts": _iso(ts),
                                                       "value": value, "interval_s": 900}).encode()))
    # Exact re-sends of interval readings, under a random key or none: ingest must not rely on keys.
    duplicates = [(rng.choice([None, b"utility-batch-7", b"x"]), value) for _, value in rng.sample(interval_msgs, DUPLICATES)]
    bad = malformed_messages(rng)
    expected_reasons = Counter(reason for _, reason in bad)
    feed = interval_msgs + duplicates + [(None, payload) for payload, _ in bad]
    rng.shuffle(feed)
    # Register messages keep their relative order; interleave them at random places into the rest.
    merged = []
    positions = sorted(rng.sample(range(len(feed) + len(register_msgs)), len(register_msgs)))
    reg_iter, rest_iter, pos_set = iter(register_msgs), iter(feed), set(positions)
    for k in range(len(feed) + len(register_msgs)):
        merged.append(next(reg_iter) if k in pos_set else next(rest_iter))
    assert len(merged) == TOTAL
    return merged, expected_reasons, baselines


def test_ten_thousand_messy_messages_are_all_accounted_for(ingest_worker):
    feed, expected_reasons, baselines = build_feed()
    expected_emitted = TOTAL - MALFORMED - DUPLICATES - baselines
    produce(ingest_worker.bootstrap, ingest_worker.topic("readings.raw"), feed)

    validated = consume(ingest_worker.bootstrap, ingest_worker.topic("readings.validated"), expected=expected_emitted)
    dead = consume(ingest_worker.bootstrap, ingest_worker.topic("readings.deadletter"), expected=MALFORMED)
    counts = wait_for_counts(ingest_worker, lambda c: c.get("received", 0) >= TOTAL
                             and c.get("valid", 0) + c.get("duplicates", 0) + c.get("dead_lettered", 0) >= TOTAL)

    # What came out, read from the topics themselves.
    assert len(validated) == expected_emitted, ingest_worker.log_tail()
    assert len(dead) == MALFORMED
    # The identity, from the worker's own metrics.
    assert counts["received"] == TOTAL
    assert counts["valid"] + counts["duplicates"] + counts["dead_lettered"] == TOTAL
    assert counts["duplicates"] == DUPLICATES
    assert counts["dead_lettered"] == MALFORMED
    assert counts["register_baselines"] == baselines
    assert counts["emitted"] == expected_emitted
    # Keyed by household in its own partition (raw and by-household share a partition count here): applied
    # directly; the re-sends under another key or none went through readings.by-household.
    page = ingest_worker.metrics_page()
    assert 'elderwatch_ingest_routes_total{route="rekeyed"} %.1f' % DUPLICATES in page
    assert 'elderwatch_ingest_routes_total{route="direct"} %.1f' % (TOTAL - MALFORMED - DUPLICATES) in page

    # Every dead letter keeps the original bytes and says why.
    sent_bad = Counter(value for key, value in feed if key is None or key not in (b"utility-batch-7", b"x"))
    reasons = Counter()
    for record in dead:
        envelope = loads(record)
        original = base64.b64decode(envelope["original_value_b64"])
        assert sent_bad[original] > 0, "dead letter does not carry bytes we sent"
        assert envelope["detail"] and envelope["source_topic"] == ingest_worker.topic("readings.raw")
        reasons[envelope["reason"]] += 1
    assert reasons == expected_reasons

    # Output is keyed by household and equals what the offline path makes of the same feed.
    offline = OfflineIngest()
    expected = Counter()
    for _, value in feed:
        outcome = offline.feed(value)
        if isinstance(outcome, Emitted):
            r = outcome.reading
            expected[(r.household_id, r.meter.value, r.ts.isoformat(), r.value)] += 1
    got = Counter()
    for record in validated:
        reading = loads(record)
        assert record.key == reading["household_id"].encode()
        got[(reading["household_id"], reading["meter"], datetime.fromisoformat(reading["ts"]).isoformat(),
             reading["value"])] += 1
    assert got == expected


def _routed(household: str, ts: datetime, raw_offset: int, raw_topic: str) -> bytes:
    """A message of readings.by-household as ingest-validate writes it, sent from raw (partition 0, raw_offset)."""
    from schemas.readings import MeterReading
    from schemas.routing import RawOrigin, RoutedReading

    reading = MeterReading(household_id=household, meter="water", ts=ts, value=12.5)
    raw = reading.model_dump_json().encode()
    routed = RoutedReading(form="interval", interval_reading=reading, origin=RawOrigin(
        topic=raw_topic, partition=0, offset=raw_offset, value_b64=base64.b64encode(raw).decode()))
    return routed.model_dump_json(by_alias=True).encode()


def test_raw_messages_sent_again_by_validate_are_skipped_not_dead_lettered(ingest_worker):
    # ingest-validate, restarted or rebalanced, sends the raw messages since its last commit downstream
    # again, at new offsets of readings.by-household. Four days of a series, then its first ten raw
    # messages again: applied already, so skipped and counted (older than the 48 h de-duplication
    # horizon they used to be dead-lettered too_late). A reading the utility really sent twice, at a new
    # raw offset, is still judged: too_late.
    household, raw_topic = "hh-sent-again", ingest_worker.topic("readings.raw")
    before = wait_for_counts(ingest_worker, lambda c: True)
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    series = [(household.encode(), _routed(household, start + i * STEP, 1000 + i, raw_topic)) for i in range(4 * 96)]
    sent_again = series[:10]
    resent_by_utility = [(household.encode(), _routed(household, start, 5000, raw_topic))]
    produce(ingest_worker.bootstrap, ingest_worker.topic("readings.by-household"), series + sent_again + resent_by_utility)

    def delta(c, name):
        return c.get(name, 0) - before.get(name, 0)

    counts = wait_for_counts(ingest_worker, lambda c: delta(c, "raw_redelivered") + delta(c, "valid")
                             + delta(c, "dead_lettered") >= len(series) + len(sent_again) + 1)
    assert delta(counts, "valid") == len(series)
    assert delta(counts, "raw_redelivered") == len(sent_again)
    assert delta(counts, "dead_lettered") == 1 and delta(counts, "duplicates") == 0
    letters = [loads(r) for r in consume(ingest_worker.bootstrap, ingest_worker.topic("readings.deadletter"),
                                         expected=MALFORMED + 1)]
    mine = [d for d in letters if d.get("household_id") == household]
    assert [(d["reason"], d["source_offset"]) for d in mine] == [("too_late", 5000)]
