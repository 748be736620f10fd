"""The staff API's wire formats, its route table and the OpenAPI 3.1 document built from both.

:data:`ROUTES` is the one list of the API's operations: ``streams/staff_api.py`` registers exactly
these routes (and refuses to start if a handler is missing or extra), and :func:`openapi_document`
describes exactly these, with the JSON Schemas pydantic gives for the models below. The document
cannot drift from the code: both are read from here.

>>> doc = openapi_document()
>>> doc["openapi"], sorted(doc["paths"]["/api/v1/tickets/{ticket_id}/acknowledge"])
('3.1.0', ['post'])
>>> doc["components"]["schemas"]["HandleRequest"]["required"]
['notes']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Callable, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import models_json_schema

from schemas.ticket import EventKind, Outcome, State, Ticket
from schemas.anomaly import AnomalyWarning
from schemas.dead_letter import RejectReason
from schemas.households import Household, StaffAssignment, StaffId
from schemas.readings import MeterReading, MeterRegisterReading
from schemas.tickets import AwayMode

API = "/api/v1"
OPENAPI_FILENAME = "staff-api.openapi.json"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# -- responses ---------------------------------------------------------------------------------

class ErrorBody(BaseModel):
    """Every error: nothing was changed, ``error`` says why (a 409 gives the ticket's allowed actions)."""

    error: str


class RosterEntry(BaseModel):
    """Who looks after a household: community and staff ids only (names and phones stay with the office)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    community: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    primary_worker: StaffId
    backup_worker: StaffId | None = None
    supervisor: StaffId | None = None
    timezone: str | None = Field(default=None, description="IANA zone of the home; on PUT, none keeps the current "
                                                           "one (UTC for a new household).")

    @classmethod
    def of(cls, household: Household) -> "RosterEntry":
        s = household.staff
        return cls(community=household.community, primary_worker=s.primary_worker, backup_worker=s.backup_worker,
                   supervisor=s.supervisor, timezone=household.timezone)

    def household(self, household_id: str, current: Household | None) -> Household:
        """The roster record this entry makes; tags and enrolled meters (not part of the API) are kept from ``current``."""
        return Household(household_id=household_id, community=self.community,
                         tags=current.tags if current else (), meters=current.meters if current else (),
                         timezone=self.timezone or (current.timezone if current else "UTC"),
                         staff=StaffAssignment(primary_worker=self.primary_worker, backup_worker=self.backup_worker,
                                               supervisor=self.supervisor))


class TicketSummary(BaseModel):
    ticket_id: str
    household_id: str
    kind: str
    severity: str
    state: State
    assignee: str | None
    opened_at: AwareDatetime
    deadline: AwareDatetime | None
    condition_cleared: bool
    warnings: int = Field(description="How many warnings the ticket gathered.")

    @classmethod
    def of(cls, t: Ticket) -> "TicketSummary":
        return cls(ticket_id=t.ticket_id, household_id=t.household_id, kind=t.kind, severity=t.severity,
                   state=t.state, assignee=t.assignee, opened_at=t.opened_at, deadline=t.deadline,
                   condition_cleared=t.condition_cleared, warnings=len(t.warning_ids))


class TicketList(BaseModel):
    tickets: list[TicketSummary] = Field(description="Newest first.")


class TicketDetail(BaseModel):
    ticket: Ticket
    evidence: list[AnomalyWarning] = Field(description="The warnings of the ticket, with their evidence.")
    away: AwayMode | None
    roster: RosterEntry | None
    recent_usage: dict[str, Any] | None = Field(description="The household's recent meter use, where available.")


class ActionResult(BaseModel):
    result: Literal["applied", "duplicate"] = Field(description="'duplicate': this Idempotency-Key was applied "
                                                                "before; nothing changed.")
    ticket: Ticket


class Pending(BaseModel):
    """Accepted but not yet visible: the command is on its topic and will be applied (or rejected, on the
    step's ``.ack`` topic). Repeat the request with the same Idempotency-Key to learn the result."""

    status: Literal["pending"] = "pending"
    idempotency_key: str | None = Field(default=None, description="The Idempotency-Key to repeat the request with "
                                                                  "(generated if none was sent).")


class HouseholdView(BaseModel):
    household_id: str
    roster: RosterEntry | None
    away: AwayMode | None
    tickets: list[TicketSummary] = Field(description="The household's tickets on the desk, newest first.")
    recent_usage: dict[str, Any] | None


# -- requests ----------------------------------------------------------------------------------

class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HandleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: Text = Field(description="What was found, who was there.")


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: AwareDatetime


class EscalateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    notes: Text | None = None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class AwayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: AwareDatetime
    since: AwareDatetime | None = Field(default=None, description="Start (may be in the past); none: now.")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        default=None, description="Short, no personal details.")


#: POST /tickets/{ticket_id}/<action>: the event kind it becomes and its body. The body's fields
#: are the Event's fields of the same names.
TICKET_ACTIONS: dict[str, tuple[EventKind, type[BaseModel], str]] = {
    "acknowledge": (EventKind.ACKNOWLEDGE, AcknowledgeRequest, "I take it: I will go or call"),
    "handle": (EventKind.HANDLE, HandleRequest, "Visited or called: record what was found"),
    "snooze": (EventKind.SNOOZE, SnoozeRequest, "Put an accepted ticket off until a time"),
    "escalate": (EventKind.ESCALATE, EscalateRequest, "Ask the next person in the chain"),
    "feedback": (EventKind.FEEDBACK, FeedbackRequest, "Record the outcome (it tunes detection)"),
    "cancel": (EventKind.CANCEL, CancelRequest, "Raised in error: cancel with a reason"),
}


# -- the route table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the same template syntax for aiohttp and OpenAPI: {name}
    operation_id: str  # also the handler's name in streams/staff_api.py
    summary: str
    request: type[BaseModel] | None = None
    ok: type[BaseModel] | None = None  # the 200 body (none: free-form JSON)
    errors: tuple[int, ...] = ()  # besides 401 (auth) and 400 (a body or query to check), added below
    pending: bool = False  # may answer 202 Pending
    auth: bool = True
    idempotency_key: bool = False
    query: dict[str, dict] = field(default_factory=dict)  # name -> JSON Schema


TICKET = f"{API}/tickets/{{ticket_id}}"
HOUSEHOLD = f"{API}/households/{{household_id}}"

ROUTES: tuple[Route, ...] = (
    Route("GET", f"{API}/tickets", "list_tickets", "The caller's tickets: of the households they look after",
          ok=TicketList, query={"state": {"type": "string", "enum": ["open", "all"], "default": "open"}}),
    Route("GET", TICKET, "get_ticket", "A ticket with its evidence, the household's away mode and roster",
          ok=TicketDetail, errors=(403, 404)),
    *(Route("POST", f"{TICKET}/{name}", f"{name}_ticket", summary, request=body, ok=ActionResult,
            errors=(403, 404, 409), pending=True, idempotency_key=True)
      for name, (_, body, summary) in TICKET_ACTIONS.items()),
    Route("GET", HOUSEHOLD, "get_household", "A household's roster, away mode and tickets",
          ok=HouseholdView, errors=(403, 404)),
    Route("PUT", f"{HOUSEHOLD}/away", "set_away", "Away mode: inactivity and decline warnings open no ticket",
          request=AwayRequest, ok=HouseholdView, errors=(403, 404), pending=True),
    Route("DELETE", f"{HOUSEHOLD}/away", "end_away", "End away mode now", ok=HouseholdView, errors=(403, 404),
          pending=True),
    Route("PUT", f"{HOUSEHOLD}/roster", "set_roster", "Change who looks after a household (its supervisor, or "
          "the duty desk for a household without roster or supervisor)", request=RosterEntry, ok=HouseholdView,
          errors=(403,), pending=True),
    Route("GET", f"{API}/openapi.json", "get_openapi", "This document", auth=False),
)

# -- POST /api/v1/readings (streams/http_ingest.py): a utility's door, documented here, not a staff route ----

READINGS_PATH = f"{API}/readings"


class IngestRejection(BaseModel):
    line: int = Field(description="Line number in the body (NDJSON, CSV: the file's line; JSON: the array element).")
    reason: RejectReason
    detail: str = Field(description="Field names and what is wrong; never the values.")


class IngestResult(BaseModel):
    """What became of the body's readings: each one accepted (sent to readings.raw) or rejected (dead-lettered
    with its original bytes). Blank lines are not readings."""

    accepted: int
    rejected: int
    rejections: list[IngestRejection] = Field(description="The first 1,000 rejections, in line order.")
    rejections_truncated: bool = Field(default=False, description="More rejections than listed.")


class IngestStopped(IngestResult):
    """The request stopped part way (413 over a limit, 400 broken gzip, 503 Kafka unavailable): the lines up to
    ``last_line`` were taken as counted, nothing after them was read. Before any line: the counts are 0."""

    error: str
    last_line: int = Field(default=0, description="The last line taken.")


def _readings_path(ref: Callable[[type[BaseModel]], dict], reading: dict) -> dict:
    error = {"application/json": {"schema": ref(ErrorBody)}}
    stopped = {"application/json": {"schema": ref(IngestStopped)}}
    array = {"type": "array", "items": reading}
    return {"post": {
        "operationId": "push_readings",
        "summary": "A utility pushes meter readings (the HTTP door into ingest)",
        "description": "Bearer token of a user with role utility. Each reading (line, CSV row, array element) is "
                       "parsed like a readings.raw message; a reading naming another utility or a household this "
                       "utility serves no meter of is rejected `forbidden`; a meter of this utility enrolled for "
                       "no household at the reading's time `unknown_meter`. Accepted readings go to readings.raw as "
                       "sent, rejected ones to readings.deadletter, before the answer. Content-Encoding: gzip is "
                       "taken; ELDERWATCH_INGEST_MAX_BODY_BYTES caps the body as sent and decompressed, "
                       "ELDERWATCH_INGEST_RATE_PER_MIN the requests per token.",
        "security": [{"bearer": []}],
        "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                        "schema": {"type": "string", "enum": ["gzip", "identity"]}}],
        "requestBody": {"required": True, "content": {
            "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON reading per line."},
                                     "x-itemSchema": reading},
            "application/json": {"schema": array},
            "text/csv": {"schema": {"type": "string", "description": "Header household_id,meter,ts,value; utility_id,"
                                                                    "meter_id may be added (household_id then empty "
                                                                    "or left out). One row per line."}},
        }},
        "responses": {
            "200": {"description": "Every reading accepted or rejected (with reasons)",
                    "content": {"application/json": {"schema": ref(IngestResult)}}},
            "400": {"description": "Not a body of its content type (a JSON body that is not an array, a CSV without "
                                   "its header, broken gzip): nothing taken (or, for broken gzip, what the counts "
                                   "say)", "content": stopped},
            "401": {"description": "No token, or an unknown one", "content": error},
            "403": {"description": "Not a utility's token", "content": error},
            "413": {"description": "Body (as sent or decompressed) or a line over the limit; the lines before it "
                                   "were taken as counted", "content": stopped},
            "415": {"description": "Content-Type not NDJSON, JSON or CSV, or an encoding other than gzip",
                    "content": error},
            "429": {"description": "Over the token's requests per minute; Retry-After says when to try again",
                    "content": error},
            "503": {"description": "HTTP ingest is off (no users file), enrolments still loading (Retry-After), "
                                   "or Kafka unavailable part way (the counts say what was taken)", "content": stopped},
        },
    }}


PATH_PARAMETERS = {
    "ticket_id": "The ticket id (household/kind/episode start), URL-encoded: '/' as %2F, ':' as %3A, '+' as %2B.",
    "household_id": "The household id.",
}

_STATUS = {400: "Invalid body or query: nothing changed", 401: "No or unknown credentials",
           403: "The caller does not look after this household", 404: "Unknown ticket or household",
           409: "Not allowed now (the error says what is): nothing changed",
           503: "Cannot be answered correctly here now, the error says why: this worker's tables are still "
                "recovering, the household's partition is moving or its worker did not answer, or (a list "
                "gathered from several workers) not every partition could be answered. Nothing changed; retry "
                "after Retry-After"}


def _schema_of(models: list[tuple[type[BaseModel], str]]) -> tuple[dict, dict]:
    refs, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return refs, top.get("$defs", {})


@lru_cache(maxsize=1)
def _document() -> dict:
    wanted = {(r.request, "validation") for r in ROUTES if r.request} | {(r.ok, "serialization") for r in ROUTES if r.ok}
    wanted |= {(ErrorBody, "serialization"), (Pending, "serialization")}
    ingest_models = (IngestResult, IngestStopped, MeterReading, MeterRegisterReading)
    wanted |= {(model, "serialization") for model in ingest_models}
    refs, schemas = _schema_of(sorted(wanted, key=lambda m: (m[0].__name__, m[1])))

    def body(model: type[BaseModel], mode: str) -> dict:
        return {"application/json": {"schema": refs[(model, mode)]}}

    def response(description: str, model: type[BaseModel] | None) -> dict:
        return {"description": description, **({"content": body(model, "serialization")} if model else
                                                {"content": {"application/json": {"schema": {"type": "object"}}}})}

    paths: dict[str, dict] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary}
        params = [{"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS[name],
                   "schema": {"type": "string"}} for name in re.findall(r"{(\w+)}", r.path)]
        params += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in r.query.items()]
        if r.idempotency_key:
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "description": "Recommended. The same key repeated applies once (the answer says "
                                          "'duplicate'); without one, a retry after a lost answer acts twice.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 100}})
        if params:
            op["parameters"] = params
        if r.request:
            op["requestBody"] = {"required": r.request.model_json_schema().get("required") is not None,
                                 "content": body(r.request, "validation")}
        responses = {"200": response("Done", r.ok)}
        if r.pending:
            responses["202"] = response("Sent, not yet visible (after 5 s)", Pending)
        # every authenticated route reads a table first (streams.staff_api.owner_of): 503 while it cannot
        errors = set(r.errors) | ({401, 503} if r.auth else set()) | ({400} if r.request or r.query else set())
        for status in sorted(errors):
            responses[str(status)] = response(_STATUS[status], ErrorBody)
        if "503" in responses:
            responses["503"]["headers"] = {"Retry-After": {"description": "Seconds to wait before trying again",
                                                           "schema": {"type": "integer"}}}
        op["responses"] = responses
        if not r.auth:
            op["security"] = []
        paths.setdefault(r.path, {})[r.method.lower()] = op
    # the utilities' door: not a staff route (not in ROUTES; streams/http_ingest.py serves it)
    reading = {"oneOf": [refs[(MeterReading, "serialization")], refs[(MeterRegisterReading, "serialization")]]}
    paths[READINGS_PATH] = _readings_path(lambda model: refs[(model, "serialization")], reading)

    return {
        "openapi": "3.1.0",
        "info": {"title": "elderwatch staff API", "version": "1",
                 "description": "Community workers' tickets: list, see the evidence, acknowledge, handle, give "
                                "feedback; a household's away mode and roster. Writes are commands on the ticket "
                                "topics: 200 when applied within 5 s, else 202 (pending). Also the utilities' "
                                f"{READINGS_PATH} (their own tokens)."},
        "security": [{"bearer": []}, {"staffId": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from the staff tokens file."},
                "staffId": {"type": "apiKey", "in": "header", "name": "X-Staff-Id",
                            "description": "Development only (no tokens file): the caller's staff id, trusted."},
            },
        },
    }


def openapi_document() -> dict:
    """The OpenAPI 3.1 document of the staff API (a fresh copy: callers may change it)."""
    import copy

    return copy.deepcopy(_document())


__all__ = ["API", "ROUTES", "Route", "TICKET_ACTIONS", "OPENAPI_FILENAME", "openapi_document", "ErrorBody",
           "RosterEntry", "TicketSummary", "TicketList", "TicketDetail", "ActionResult", "Pending", "HouseholdView",
           "AcknowledgeRequest", "HandleRequest", "SnoozeRequest", "EscalateRequest", "FeedbackRequest",
           "CancelRequest", "AwayRequest", "READINGS_PATH", "IngestRejection", "IngestResult", "IngestStopped"]
