"""Faust tables. Each name is also the name of its changelog topic: keep names stable."""

from __future__ import annotations

import faust

from elderwatch.settings import Settings

SERIES_STATE = "ingest-series-state"


def series_state_table(app: faust.App, settings: Settings) -> faust.Table:
    """``"household_id/meter"`` -> :meth:`SeriesState.to_json`, co-partitioned with readings.by-household."""
    return app.Table(SERIES_STATE, default=None, partitions=settings.partitions,
                     key_type=str, value_type=None,
                     help="Per household and meter: recent timestamps (de-duplication) and the register high-water mark.")
