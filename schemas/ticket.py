"""A ticket and the events that move it: the wire format the ticket topics, acks and staff API carry.

The state machine that moves a ticket (:func:`dispatch.tickets.apply`) lives in ``dispatch/``; the
shapes live here, so ``schemas/`` imports nothing of ours and every door (topics, API, console)
reads one definition.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class State(StrEnum):
    OPEN = "open"                            # a warning arrived; nobody told yet
    DISPATCHED = "dispatched"                # sent to the household's primary worker
    ESCALATED = "escalated"                  # not acknowledged in time: sent to the next person
    ACCEPTED = "accepted"                    # a person acknowledged it and will go or call
    SNOOZED = "snoozed"                      # accepted, deliberately put off until a time
    HANDLED = "handled"                      # visited or called, notes recorded
    FEEDBACK_RECORDED = "feedback_recorded"  # the outcome is known (flows back to detection)
    CLOSED = "closed"
    CANCELLED = "cancelled"                  # raised in error (duplicate, test household), with a reason


TERMINAL = frozenset({State.CLOSED, State.CANCELLED})


class EventKind(StrEnum):
    WARNING = "warning"                  # another warning of the same episode or kind: attach
    DISPATCH = "dispatch"
    ACK_TIMEOUT = "ack_timeout"          # from due(): dispatch not acknowledged in time
    ACKNOWLEDGE = "acknowledge"
    ESCALATE = "escalate"                # a person asks for the next in the chain (e.g. the contact did not answer)
    HANDLE_TIMEOUT = "handle_timeout"    # from due(): accepted but not handled in time: re-alert
    SNOOZE = "snooze"
    WAKE = "wake"                        # from due(): the snooze is over
    HANDLE = "handle"
    FEEDBACK_TIMEOUT = "feedback_timeout"  # from due(): handled, but no outcome recorded in time: remind
    FEEDBACK = "feedback"
    CLOSE = "close"
    CANCEL = "cancel"
    CONDITION_CLEARED = "condition_cleared"


class Outcome(StrEnum):
    CONFIRMED_EMERGENCY = "confirmed_emergency"
    NEEDED_HELP = "needed_help"
    BENIGN_EXPLAINED = "benign_explained"  # heater, visitors, cleaning, …
    NOT_HOME = "not_home"
    FALSE_ALARM = "false_alarm"
    METER_FAULT = "meter_fault"


class Event(BaseModel):
    """Something that happens to a ticket. ``idempotency_key`` makes a repeat harmless."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EventKind
    idempotency_key: str = Field(min_length=1, max_length=200)
    actor: str = Field(min_length=1, max_length=64, description="A staff id, or 'system'.")
    at: AwareDatetime
    notes: str | None = Field(default=None, max_length=2000)
    outcome: Outcome | None = None
    until: AwareDatetime | None = None
    reason: str | None = Field(default=None, max_length=200)
    warning_id: str | None = None


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    ticket_id: str
    household_id: str
    kind: str
    severity: str
    summary: str | None = Field(default=None, description="The first warning's sentence for a community worker.")
    community: str | None = Field(default=None, description="The household's community on the roster when the ticket "
                                  "opened (routes its notifications); none: not on the roster, or an older ticket.")
    config_version: str | None = Field(default=None, description="The detection config the first warning was raised "
                                                                  "under (an audit's answer to 'which setting').")
    state: State = State.OPEN
    chain: tuple[str, ...] = Field(description="Who is asked, in order: primary worker, backup, supervisor.")
    escalation_level: int = 0
    assignee: str | None = None
    deadline: AwareDatetime | None = Field(default=None, description="When the current step is overdue.")
    snoozed_until: AwareDatetime | None = None
    realerts: int = 0
    condition_cleared: bool = False
    lowered_from: str | None = Field(default=None, description="The severity before a cleared condition lowered it.")
    warning_ids: tuple[str, ...] = ()
    outcome: Outcome | None = None
    notes: tuple[str, ...] = ()
    opened_at: AwareDatetime
    acknowledged_at: AwareDatetime | None = None
    handled_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    seen_keys: tuple[str, ...] = ()
    version: int = 0


__all__ = ["State", "TERMINAL", "EventKind", "Outcome", "Event", "Ticket"]
