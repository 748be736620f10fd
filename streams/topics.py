"""Every topic elderwatch reads or writes: name, key, value and partitioning, in one place.

Keyed topics carry ``household_id`` as the key, so all of a household's readings land in one
partition, in order, next to that household's state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    keyed_by_household: bool
    description: str
    compacted: bool = False


READINGS_RAW = TopicSpec(
    "readings.raw", key="anything or none", value="JSON MeterReading or MeterRegisterReading (bytes as sent)",
    keyed_by_household=False, description="What utilities send. Validated by ingest; nothing here is trusted.")
READINGS_BY_HOUSEHOLD = TopicSpec(
    "readings.by-household", key="household_id", value="JSON RoutedReading (internal)",
    keyed_by_household=True, description="Parsed readings re-keyed by household, with their origin, for the per-series stage (only those the "
                "utility did not key by household id already: the rest take the direct route).")
READINGS_VALIDATED = TopicSpec(
    "readings.validated", key="household_id", value="JSON ValidatedReading",
    keyed_by_household=True, description="Interval consumption in kWh or litres, de-duplicated. For other readers: "
                                         "detection gets these readings from ingest in the same batch.")
READINGS_DEADLETTER = TopicSpec(
    "readings.deadletter", key="household_id if known, else none", value="JSON DeadLetter (original bytes + reason)",
    keyed_by_household=False, description="Every rejected message, exactly as received, with why and where from.")

ANOMALIES = TopicSpec(
    "anomalies", key="household_id", value="JSON AnomalyWarning",
    keyed_by_household=True, description="One warning per anomaly episode, from the detect stage. Dispatch reads this.")


# The ticket loop (预警—派单—处置—反馈): a topic per step, each acknowledged on its own .ack topic.
TICKETS_WARNING = TopicSpec(
    "tickets.warning", key="household_id", value="JSON TicketCommand (warning, condition_cleared)",
    keyed_by_household=True, description="Warnings entering the loop (from anomalies). The ticket stage opens, attaches or suppresses.")
TICKETS_DISPATCH = TopicSpec(
    "tickets.dispatch", key="household_id", value="JSON TicketCommand (dispatch, ack_timeout, acknowledge, escalate, cancel)",
    keyed_by_household=True, description="Work orders to staff and their acknowledgement; timeouts escalate along the chain.")
TICKETS_HANDLE = TopicSpec(
    "tickets.handle", key="household_id", value="JSON TicketCommand (handle, snooze, handle_timeout, wake, feedback_timeout)",
    keyed_by_household=True, description="Visits and calls with their notes; re-alerts of accepted, unhandled tickets.")
TICKETS_FEEDBACK = TopicSpec(
    "tickets.feedback", key="household_id", value="JSON TicketCommand (feedback, close)",
    keyed_by_household=True, description="Outcomes, and detection's close once it has learned one. Read by the ticket stage (detection learns from its applied acks).")
TICKET_STEPS = (TICKETS_WARNING, TICKETS_DISPATCH, TICKETS_HANDLE, TICKETS_FEEDBACK)


def ack_of(spec: TopicSpec) -> TopicSpec:
    return TopicSpec(f"{spec.name}.ack", key="household_id", value="JSON TicketAck", keyed_by_household=True,
                     description=f"What became of each {spec.name} command: applied, duplicate, rejected (with the "
                                 "reason) or suppressed, with the ticket after it.")


TICKET_ACKS = tuple(ack_of(spec) for spec in TICKET_STEPS)

HOUSEHOLDS_ROSTER = TopicSpec(
    "households.roster", key="household_id", value="JSON Household (community, primary/backup worker, supervisor)",
    keyed_by_household=True, compacted=True,
    description="Who is responsible for each household. Loaded from households.csv, editable at run time; latest wins.")
HOUSEHOLDS_AWAY = TopicSpec(
    "households.away", key="household_id", value="JSON AwayMode, or empty to end it",
    keyed_by_household=True, compacted=True,
    description="Away mode per household: inactivity and decline warnings open no ticket meanwhile.")

NOTIFICATIONS_PENDING = TopicSpec(
    "notifications.pending", key="household_id", value="JSON Notification",
    keyed_by_household=True,
    description="Notifications still being retried when their worker stopped or rebalanced; the notify agent delivers them.")

ALL_TOPICS = (READINGS_RAW, READINGS_BY_HOUSEHOLD, READINGS_VALIDATED, READINGS_DEADLETTER, ANOMALIES,
              *TICKET_STEPS, *TICKET_ACKS, HOUSEHOLDS_ROSTER, HOUSEHOLDS_AWAY, NOTIFICATIONS_PENDING)


def full_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


def partition_plan(partitions: int, prefix: str = "") -> dict[str, int]:
    """Topic name -> partition count. Keyed topics must share one count (co-partitioning)."""
    return {full_name(spec, prefix): partitions for spec in ALL_TOPICS}


def compaction_config(prefix: str = "") -> dict[str, dict[str, str]]:
    """Topic configs for the compacted topics (latest value per key is what matters)."""
    return {full_name(spec, prefix): {"cleanup.policy": "compact"} for spec in ALL_TOPICS if spec.compacted}
