"""The words the console shows for the loop's codes: states, kinds, severities, outcomes, events.

Marked with :func:`N_` so Babel's extractor finds them; translated when shown (``_(STATES[...])``).
Written for community workers, not engineers: what the state means for them, not its name.
"""

from __future__ import annotations

import re


def N_(message: str) -> str:  # noqa: N802 (gettext's name for "mark, translate later")
    return message


STATES = {
    "open": N_("new"),
    "dispatched": N_("sent, waiting to be taken"),
    "escalated": N_("escalated, waiting to be taken"),
    "accepted": N_("taken"),
    "snoozed": N_("snoozed"),
    "handled": N_("handled, outcome needed"),
    "feedback_recorded": N_("outcome recorded"),
    "closed": N_("closed"),
    "cancelled": N_("cancelled"),
}

KINDS = {
    "inactivity": N_("No sign of activity"),
    "continuous_flow": N_("Water running without a break"),
    "surge": N_("Unusually high electricity use"),
    "night_activity": N_("Up in the night"),
    "meter_offline": N_("Meter not reporting"),
    "decline": N_("Less activity for days"),
}

#: Why a kind matters, in one sentence (the evidence sentence below it gives this household's numbers).
KIND_WHY = {
    "inactivity": N_("No water used and no appliance switched on for much longer than this home is usually quiet "
                     "at this time of day. Someone may have fallen or be unwell."),
    "continuous_flow": N_("Water has been running steadily for longer than normal life ever keeps it running: a tap "
                          "left open, a leak, or someone who cannot turn it off."),
    "surge": N_("Electricity far above this home's usual for this time of day, for a long time: a heater or "
                "cooker left on."),
    "night_activity": N_("Up during the usual sleeping hours on several recent nights: restlessness, illness or "
                         "confusion."),
    "meter_offline": N_("A meter stopped sending readings. This is for the utility; nobody needs a visit."),
    "decline": N_("Less daily activity than usual for many days in a row: worth a call this week."),
}

SEVERITIES = {
    "high": N_("urgent: check now"),
    "medium": N_("today"),
    "low": N_("this week"),
    "info": N_("for information"),
}

OUTCOMES = {
    "confirmed_emergency": N_("Emergency: help was needed at once"),
    "needed_help": N_("Needed help, not an emergency"),
    "benign_explained": N_("All well, explained (heater, visitors, cleaning...)"),
    "not_home": N_("Not at home"),
    "false_alarm": N_("False alarm: nothing was wrong"),
    "meter_fault": N_("Meter fault"),
}

EVENTS = {
    "opened": N_("Ticket opened"),
    "warning": N_("Another warning joined this ticket"),
    "dispatch": N_("Sent to"),
    "ack_timeout": N_("Not taken in time: escalated to"),
    "acknowledge": N_("Taken by"),
    "escalate": N_("Escalated (asked for the next person) by"),
    "handle_timeout": N_("Reminder: taken but not handled yet"),
    "snooze": N_("Snoozed by"),
    "wake": N_("Snooze over"),
    "handle": N_("Handled by"),
    "feedback_timeout": N_("Reminder: outcome still missing"),
    "feedback": N_("Outcome recorded by"),
    "close": N_("Closed (detection has learned from the outcome)"),
    "cancel": N_("Cancelled by"),
    "condition_cleared": N_("The meters look normal again"),
    "closed": N_("Closed"),
    "cancelled": N_("Cancelled"),
}

ROLES = {"staff": N_("community worker"), "supervisor": N_("supervisor"), "operator": N_("operator"),
         "utility": N_("utility")}

METERS = {"electricity": N_("Electricity"), "water": N_("Water")}

ESCALATE_REASONS = {
    "no_answer": N_("The contact did not answer"),
    "cannot_go": N_("I cannot go now"),
}

SNOOZE_HOURS = (1, 2, 4, 8, 24)

#: Severity order of the ticket list.
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}

_NOT_ALLOWED = re.compile(r"^(?P<action>\w+): not allowed from (?P<state>\w+) \(allowed: (?P<allowed>.*)\)$")


def rejection(reason: str, gettext) -> str:
    """A 409's reason in the reader's words when it is the usual "not allowed from <state>", else as it came."""
    _ = gettext
    match = _NOT_ALLOWED.match(reason)
    if match and match["state"] in STATES:
        return _("Not possible any more: the ticket is now %(state)s. Someone may have acted on it first; "
                 "the page shows it as it is now.") % {"state": _(STATES[match["state"]])}
    return _("Not done: %(reason)s") % {"reason": reason}


__all__ = ["N_", "STATES", "KINDS", "KIND_WHY", "SEVERITIES", "OUTCOMES", "EVENTS", "ROLES", "METERS",
           "ESCALATE_REASONS", "SNOOZE_HOURS", "SEVERITY_ORDER", "rejection"]
