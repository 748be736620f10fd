"""Faust tables. Each name is also the name of its changelog topic: keep names stable."""

from __future__ import annotations

import faust

from elderwatch.settings import Settings

#: Every changelog: compacted (the latest state per key is what a restart needs), and its active segment closed
#: after an hour. The broker compacts closed segments only; with its defaults (1 GiB or 7 days) a restart would
#: read every write since the segment began: up to ~20 million series-state records at 15,000 households
#: (bench/results/recovery.md). An hour bounds it to the compacted state plus about an hour of writes.
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "segment.ms": str(60 * 60 * 1000)}

#: Not a faust table: the ingest stage (streams/readings_loop.py) keeps its series states itself, on a changelog of
#: this name and faust's record format (key: the JSON text of "household_id/meter", value: SeriesState.to_json's JSON),
#: co-partitioned with readings.by-household.
SERIES_STATE = "ingest-series-state"


#: Not a faust table either: the detect stage (streams/detect.py DetectStage, run by streams/readings_loop.py) keeps
#: its household states itself, on a changelog of this name and faust's record format: key the household id (UTF-8
#: bytes), value :func:`streams.detect.encode_state` (the offset of the last readings.validated message applied,
#: then :meth:`HouseholdMonitor.dumps`), co-partitioned with readings.validated.
DETECT_STATE = "detect-household-state"


TICKET_DESKS = "tickets-households"


def ticket_desks_table(app: faust.App, settings: Settings) -> faust.Table:
    """``household_id`` (UTF-8 bytes) -> :class:`dispatch.desk.HouseholdDesk` JSON (roster entry, away mode,
    open and recently finished tickets), co-partitioned with the ticket topics."""
    return app.Table(TICKET_DESKS, default=None, partitions=settings.partitions,
                     key_type=bytes, value_type=bytes, extra_topic_configs=CHANGELOG_CONFIG,
                     help="Per household: who is responsible, away mode, and its tickets.")


#: Every table, for creating their changelog topics before the app starts.
ALL_TABLES = (SERIES_STATE, DETECT_STATE, TICKET_DESKS)


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic (``<app_id>-<table>-changelog``).

    >>> changelog_topic("elderwatch", DETECT_STATE)
    'elderwatch-detect-household-state-changelog'
    """
    return f"{app_id}-{table}-changelog"
