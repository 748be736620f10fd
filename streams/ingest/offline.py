"""The ingest rules without Kafka: the same parse and series code, state in a dict.

Used by the importers (so a file import and a Kafka feed give the same readings) and by tests.

>>> run = OfflineIngest(now=datetime(2026, 3, 2, tzinfo=timezone.utc))
>>> run.feed(b'{"household_id": "h1", "meter": "water", "ts": "2026-03-01T07:00:00Z", "register": 10}')
RegisterBaseline(reason='first')
>>> run.feed(b'not json').reason.value
'not_json'
>>> run.counts
Counter({'received': 2, 'valid': 1, 'register_baselines': 1, 'dead_lettered': 1})
>>> run.feed(b'{"utility_id": "u", "meter_id": "m-1", "meter": "water", "ts": "2026-03-01T07:00:00Z", "value": 1}').reason.value
'unknown_meter'

Readings that name ``utility_id`` + ``meter_id`` are mapped through ``enrolment`` (none given: an
empty one, so every such reading is ``unknown_meter``), as the Kafka and HTTP doors map them.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from streams.ingest.enrolment import Enrolment, resolve
from streams.ingest.parse import Rejection, parse_raw
from streams.ingest.series import Duplicate, Emitted, IngestLimits, Outcome, RegisterBaseline, SeriesState, accept_reading


class OfflineIngest:
    def __init__(self, limits: IngestLimits | None = None, *, now: datetime | None = None,
                 max_future: timedelta = timedelta(hours=1), enrolment: Enrolment | None = None) -> None:
        self.limits = limits or IngestLimits()
        self.enrolment = enrolment if enrolment is not None else Enrolment()
        self.now = now or datetime.now(timezone.utc)
        self.max_future = max_future
        self.series: dict[tuple[str, str], SeriesState] = {}
        self.counts: Counter[str] = Counter()

    def feed(self, value: bytes | None) -> Outcome:
        self.counts["received"] += 1
        parsed = parse_raw(value, now=self.now, max_future=self.max_future)
        if isinstance(parsed, Rejection):
            self.counts["dead_lettered"] += 1
            return parsed
        reading = resolve(parsed.reading, self.enrolment)
        if isinstance(reading, Rejection):
            self.counts["dead_lettered"] += 1
            return reading
        state = self.series.setdefault((reading.household_id, reading.meter.value), SeriesState())
        outcome = accept_reading(state, reading, self.limits)
        if isinstance(outcome, Emitted):
            self.counts.update(("valid", "emitted"))
        elif isinstance(outcome, RegisterBaseline):
            self.counts.update(("valid", "register_baselines"))
        elif isinstance(outcome, Duplicate):
            self.counts["duplicates"] += 1
        else:
            self.counts["dead_lettered"] += 1
        return outcome
