"""The ticket loop's wire formats: commands on the step topics, acknowledgements on their ``.ack`` topics,
away mode, and the notification a webhook receives.

Every step of 预警—派单—处置—反馈 has a topic, and every message on it is acknowledged on the
step's ``.ack`` topic by the stage that consumed it::

    tickets.warning   warning, condition_cleared                  ack by: tickets
    tickets.dispatch  dispatch, ack_timeout, acknowledge,
                      escalate, cancel                            ack by: tickets
    tickets.handle    handle, snooze, handle_timeout, wake,
                      feedback_timeout                            ack by: tickets
    tickets.feedback  feedback, close                             ack by: tickets, and detect (feedback)

All are keyed by ``household_id``, so one household's tickets, roster entry and away mode live in
one partition next to its detection state.

>>> c = TicketCommand.warning_from(AnomalyWarning.model_validate({
...     "warning_id": "hh-000001/inactivity/2026-03-01T02:00:00+00:00", "household_id": "hh-000001",
...     "kind": "inactivity", "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T09:00:00Z",
...     "score": 1.4, "severity": "high", "evidence": {"summary": "no water since 02:00"}}),
...     at=datetime(2026, 3, 1, 9, 1, tzinfo=timezone.utc))
>>> c.step, c.ticket_id, c.event.idempotency_key
(<Step.WARNING: 'warning'>, 'hh-000001/inactivity/2026-03-01T02:00:00+00:00', 'warning:hh-000001/inactivity/2026-03-01T02:00:00+00:00')
>>> TicketCommand.model_validate_json(c.model_dump_json()) == c
True
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.ticket import Event, EventKind, Outcome, Ticket
from schemas.anomaly import AnomalyWarning
from schemas.readings import HouseholdId


class Step(StrEnum):
    WARNING = "warning"
    DISPATCH = "dispatch"
    HANDLE = "handle"
    FEEDBACK = "feedback"


#: Which step's topic carries each event kind.
STEP_OF: dict[EventKind, Step] = {
    EventKind.WARNING: Step.WARNING,
    EventKind.CONDITION_CLEARED: Step.WARNING,
    EventKind.DISPATCH: Step.DISPATCH,
    EventKind.ACK_TIMEOUT: Step.DISPATCH,
    EventKind.ACKNOWLEDGE: Step.DISPATCH,
    EventKind.ESCALATE: Step.DISPATCH,
    EventKind.CANCEL: Step.DISPATCH,
    EventKind.HANDLE: Step.HANDLE,
    EventKind.SNOOZE: Step.HANDLE,
    EventKind.HANDLE_TIMEOUT: Step.HANDLE,
    EventKind.WAKE: Step.HANDLE,
    EventKind.FEEDBACK_TIMEOUT: Step.HANDLE,
    EventKind.FEEDBACK: Step.FEEDBACK,
    EventKind.CLOSE: Step.FEEDBACK,
}


class TicketCommand(BaseModel):
    """One event for one ticket, on its step's topic (key: ``household_id``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    step: Step
    ticket_id: str = Field(min_length=1, max_length=300)
    household_id: HouseholdId
    ticket_kind: str = Field(description="The anomaly kind of the ticket (feedback is applied to that kind).")
    event: Event
    warning: AnomalyWarning | None = Field(default=None, description="The warning itself, on step 'warning'.")

    @model_validator(mode="after")
    def _consistent(self) -> "TicketCommand":
        if STEP_OF[self.event.kind] is not self.step:
            raise ValueError(f"event {self.event.kind.value} belongs on step {STEP_OF[self.event.kind].value}")
        if self.event.kind is EventKind.WARNING and self.warning is None:
            raise ValueError("a warning command carries the warning")
        if not self.ticket_id.startswith(f"{self.household_id}/"):
            raise ValueError("ticket_id must start with the household id")
        return self

    @classmethod
    def of(cls, ticket: Ticket, event: Event) -> "TicketCommand":
        return cls(step=STEP_OF[event.kind], ticket_id=ticket.ticket_id, household_id=ticket.household_id,
                   ticket_kind=ticket.kind, event=event)

    @classmethod
    def warning_from(cls, warning: AnomalyWarning, *, at: datetime) -> "TicketCommand":
        """The warning step for a detector's warning; its key is the warning id (stable)."""
        event = Event(kind=EventKind.WARNING, idempotency_key=f"warning:{warning.warning_id}", actor="system",
                      at=at, warning_id=warning.warning_id)
        return cls(step=Step.WARNING, ticket_id=warning.warning_id, household_id=warning.household_id,
                   ticket_kind=warning.kind.value, event=event, warning=warning)


class AckResult(StrEnum):
    APPLIED = "applied"        # the ticket changed (or feedback reached the detectors)
    DUPLICATE = "duplicate"    # already applied: nothing changed
    REJECTED = "rejected"      # not allowed now, ``reason`` says why; nothing changed
    SUPPRESSED = "suppressed"  # a warning while the household is away: no ticket, recorded


class TicketAck(BaseModel):
    """The acknowledgement of one command, on ``<step topic>.ack`` (key: ``household_id``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    step: Step
    by: Literal["tickets", "detect"] = Field(description="The stage that consumed the command.")
    ticket_id: str
    household_id: HouseholdId
    idempotency_key: str = Field(description="The command's key: what this acknowledges.")
    command: TicketCommand
    result: AckResult
    reason: str | None = None
    ticket: Ticket | None = Field(default=None, description="The ticket after the command (stage 'tickets').")
    notify: tuple[str, ...] = Field(default=(), description="Staff ids to tell now (dispatch, escalation, re-alert).")
    detection: dict | None = Field(default=None, description="Stage 'detect': the kind's sensitivity before/after, "
                                                             "and any proposal (e.g. away mode).")
    at: AwareDatetime

    @property
    def ack_id(self) -> str:
        return f"{self.by}:{self.step.value}:{self.idempotency_key}"


class AwayMode(BaseModel):
    """A household is away (hospital stay, visiting family) from ``since`` until ``until``: inactivity and decline
    warnings open no ticket meanwhile; flow, surge and night warnings still do. On ``households.away``
    (compacted, key ``household_id``); ``until`` in the past (or a tombstone) ends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    household_id: HouseholdId
    since: AwareDatetime | None = Field(default=None, description="Start (may be in the past); none: from set_at.")
    until: AwareDatetime
    set_by: str = Field(min_length=1, max_length=64, description="Staff id, or 'family' via staff.")
    reason: str | None = Field(default=None, max_length=200, description="Short, no personal details.")
    set_at: AwareDatetime

    def active(self, at: datetime) -> bool:
        """Was the household away at ``at`` (a warning's data time)?"""
        return (self.since or self.set_at) <= at < self.until


#: Kinds that away mode suppresses: absence explains them. Flow, surge and night activity in an
#: empty home are exactly what someone must check.
SUPPRESSED_WHEN_AWAY = frozenset({"inactivity", "decline"})


class Notification(BaseModel):
    """What the webhook receives (JSON POST). ``notification_id`` is also the ``Idempotency-Key`` header:
    a receiver that sees it twice (after a retry) should act once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    notification_id: str
    recipient: str = Field(description="Staff id to tell.")
    reason: Literal["dispatched", "escalated", "re_alert", "snooze_over", "feedback_reminder"]
    ticket_id: str
    household_id: HouseholdId
    community: str | None = Field(default=None, description="The household's community (routes the notification to "
                                  "that community's channel); none: not on the roster.")
    kind: str
    severity: str
    state: str
    summary: str | None = Field(default=None, description="The warning's sentence for a community worker.")
    respond_by: AwareDatetime | None = Field(default=None, description="When the ticket's current step is overdue "
                                             "(e.g. it escalates to the next person).")
    ticket_url: str = Field(description="Path of the ticket on the staff API.")
    at: AwareDatetime


def utc(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc)
