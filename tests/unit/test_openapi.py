"""The staff API's OpenAPI document: valid in shape, and the same routes as the server registers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import faust
import pytest

from elderwatch.settings import Settings
from schemas.openapi import OPENAPI_FILENAME, ROUTES, TICKET_ACTIONS, openapi_document
from streams.staff_api import StaffAuth, register_staff_api
from schemas.users import User

REPO = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


class NoDesks:
    """register_staff_api only stores the desks; nothing is read here."""

    clock = staticmethod(lambda: datetime(2026, 3, 1, tzinfo=timezone.utc))


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), f"{ref}: not a reference inside the document"
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


def test_document_has_the_openapi_3_1_shape():
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["paths"] and doc["components"]["schemas"]
    schemes = doc["components"]["securitySchemes"]
    for requirement in doc["security"]:
        assert set(requirement) <= set(schemes)
    operation_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in item.items():
            assert method in HTTP_METHODS
            operation_ids.append(op["operationId"])
            assert op["responses"] and all(code.isdigit() for code in op["responses"])
            for response in op["responses"].values():
                assert response["description"]
            declared = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            for p in op.get("parameters", ()):
                assert p["in"] in {"path", "query", "header", "cookie"} and "schema" in p
                assert p["in"] != "path" or p["required"] is True
    assert len(operation_ids) == len(set(operation_ids)), "operationId must be unique"


def test_every_ref_resolves_inside_the_document():
    doc = openapi_document()
    refs = set(_refs(doc))
    assert "#/components/schemas/Ticket" in refs  # the walk found the references
    for ref in refs:
        _resolve(doc, ref)


def test_errors_and_bodies_are_described():
    doc = openapi_document()
    handle = doc["paths"]["/api/v1/tickets/{ticket_id}/handle"]["post"]
    assert set(handle["responses"]) == {"200", "202", "400", "401", "403", "404", "409", "503"}
    assert "Retry-After" in handle["responses"]["503"]["headers"]
    assert {p["name"] for p in handle["parameters"]} == {"ticket_id", "Idempotency-Key"}
    body = _resolve(doc, handle["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert body["required"] == ["notes"] and body["additionalProperties"] is False
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []  # no auth
    assert "401" not in doc["paths"]["/api/v1/openapi.json"]["get"]["responses"]


def _registered_routes(settings: Settings) -> set[tuple[str, str]]:
    app = faust.App("openapi-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    register_staff_api(app, NoDesks(), settings)
    return {(r.method, r.resource.canonical) for r in app.web.web_app.router.routes()
            if r.resource.canonical.startswith("/api/") and r.method != "HEAD"}  # faust adds HEAD to every view


def test_registered_routes_are_the_documented_ones(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1": "w-1"}))
    registered = _registered_routes(Settings(staff_tokens_file=tokens))
    documented = {(method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item}
    # the utilities' POST /api/v1/readings is documented beside the staff routes, served by streams/http_ingest.py
    assert ("POST", "/api/v1/readings") in documented
    assert registered == documented - {("POST", "/api/v1/readings")}
    assert registered == {(r.method, r.path) for r in ROUTES}
    assert {("POST", f"/api/v1/tickets/{{ticket_id}}/{a}") for a in TICKET_ACTIONS} <= registered


def test_tokens_file_is_checked_and_headers_only_trusted_without_one(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1": "w-1"}))
    auth = StaffAuth.from_file(tokens)
    assert auth.caller({"Authorization": "Bearer secret-1"}) == User(user_id="w-1", role="staff")
    assert auth.caller({"Authorization": "bearer secret-1"}).user_id == "w-1"
    assert auth.caller({"Authorization": "Bearer secret-2"}) is None
    assert auth.caller({"X-Staff-Id": "w-1"}) is None  # a tokens file: the header means nothing
    assert StaffAuth.from_file(None).caller({"X-Staff-Id": "w-1"}) == User(user_id="w-1", role="staff")
    assert StaffAuth.from_file(None).caller({"X-Staff-Id": "no spaces allowed"}) is None
    tokens.write_text(json.dumps({"secret-1": ""}))
    with pytest.raises(ValueError):
        StaffAuth.from_file(tokens)


def test_schema_export_writes_the_document(tmp_path):
    out = tmp_path / "schemas"
    subprocess.run([sys.executable, "-m", "elderwatch.cli", "schema", "export", str(out)], cwd=REPO, check=True,
                   capture_output=True)
    assert json.loads((out / OPENAPI_FILENAME).read_text()) == openapi_document()


# -- the handlers on an in-memory desk (what HTTP cannot easily show: a command not applied in time) --

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _staff(user_id: str) -> User:
    return User(user_id=user_id, role="staff")

WARNING = {"warning_id": "hh-1/inactivity/2026-03-01T02:00:00+00:00", "household_id": "hh-1", "kind": "inactivity",
           "episode_start": "2026-03-01T02:00:00Z", "detected_at": "2026-03-01T08:55:00Z", "score": 1.3,
           "severity": "high", "evidence": {"summary": "no water"}}


class MemoryDesks:
    """TicketDesks' interface over a dict; ``applying=False`` loses every command (the answer must be 202)."""

    def __init__(self, applying: bool = True) -> None:
        from dispatch.desk import RosterRules

        self.rules, self.applying, self.desks, self.sent = RosterRules(), applying, {}, []
        self.clock = lambda: T0

    def get(self, household_id):
        return self.desks.get(household_id)

    def all(self):
        return iter(list(self.desks.values()))

    def of_staff(self, staff_id):
        return [desk for desk in self.desks.values() if staff_id in desk.staff()]

    async def send(self, command):
        from dispatch.desk import HouseholdDesk, handle

        self.sent.append(command)
        if self.applying:
            desk = self.desks.get(command.household_id) or HouseholdDesk(household_id=command.household_id)
            result = handle(desk, command, T0, self.rules)
            self.desks[desk.household_id] = result.desk
            for follow_up in result.follow_ups:
                await self.send(follow_up)

    async def send_roster(self, household):
        from dispatch.desk import HouseholdDesk, with_roster

        self.sent.append(household)
        if self.applying:
            desk = self.desks.get(household.household_id) or HouseholdDesk(household_id=household.household_id)
            self.desks[household.household_id] = with_roster(desk, household)

    async def send_away(self, household_id, away):
        self.sent.append(away)


def _api(desks, **kwargs):
    from streams.staff_api import StaffApi

    return StaffApi(desks, StaffAuth(None), duty_desk="duty-desk", wait_s=0.2, poll_s=0.01, **kwargs)


def _run(coroutine):
    import asyncio

    from streams.staff_api import ApiError

    try:
        return asyncio.run(coroutine)
    except ApiError as exc:
        return exc.status, exc.message


def _with_ticket(desks: MemoryDesks) -> str:
    from schemas.anomaly import AnomalyWarning
    from schemas.tickets import TicketCommand

    _run(desks.send(TicketCommand.warning_from(AnomalyWarning.model_validate(WARNING), at=T0)))
    assert desks.get("hh-1").tickets[WARNING["warning_id"]].state == "dispatched"
    return WARNING["warning_id"]  # dispatched to the duty desk (no roster)


def test_an_action_not_applied_in_time_is_pending_and_sent_once():
    desks = MemoryDesks()
    ticket_id = _with_ticket(desks)
    desks.applying = False
    api = _api(desks)
    status, body = _run(api.ticket_action("acknowledge", _staff("duty-desk"), {}, b"", ticket_id, client_key="k-1"))
    assert (status, body.status, body.idempotency_key) == (202, "pending", "k-1")
    assert desks.sent[-1].event.idempotency_key == "acknowledge:duty-desk:k-1"
    assert desks.sent[-1].event.actor == "duty-desk" and desks.sent[-1].event.at == T0


def test_rejected_and_forbidden_actions_send_nothing():
    desks = MemoryDesks()
    ticket_id = _with_ticket(desks)
    sent = len(desks.sent)
    api = _api(desks)
    status, reason = _run(api.ticket_action("feedback", _staff("duty-desk"), {}, b'{"outcome": "false_alarm"}', ticket_id,
                                            client_key=None))
    assert status == 409 and reason.startswith("feedback: not allowed from dispatched")
    assert _run(api.ticket_action("acknowledge", _staff("w-9"), {}, b"", ticket_id, client_key=None))[0] == 403
    assert _run(api.ticket_action("acknowledge", _staff("duty-desk"), {}, b"", "hh-1/surge/x", client_key=None))[0] == 404
    long_note = "the neighbour, Mrs X, said " * 100
    status, reason = _run(api.ticket_action("handle", _staff("duty-desk"), {}, json.dumps({"notes": long_note}).encode(),
                                            ticket_id, client_key=None))
    assert status == 400 and "notes" in reason and "Mrs X" not in reason  # never the input itself
    assert _run(api.ticket_action("acknowledge", _staff("duty-desk"), {}, b"", ticket_id, client_key="two words"))[0] == 400
    assert len(desks.sent) == sent


def test_roster_changes_by_supervisor_or_duty_desk():
    desks = MemoryDesks()
    api = _api(desks)
    entry = json.dumps({"community": "north", "primary_worker": "w-1"}).encode()
    assert _run(api.set_roster(_staff("w-1"), {}, entry, "hh-2"))[0] == 403  # a new household: the duty desk's
    status, view = _run(api.set_roster(_staff("duty-desk"), {}, entry, "hh-2"))
    assert status == 200 and view.roster.primary_worker == "w-1" and view.roster.timezone == "UTC"
    supervised = json.dumps({"community": "north", "primary_worker": "w-1", "supervisor": "s-1"}).encode()
    assert _run(api.set_roster(_staff("duty-desk"), {}, supervised, "hh-2"))[0] == 200  # still no supervisor: duty desk
    assert _run(api.set_roster(_staff("duty-desk"), {}, entry, "hh-2"))[0] == 403  # now s-1's
    assert _run(api.set_roster(_staff("s-1"), {}, b'{"community": "north"}', "hh-2"))[0] == 400


def test_away_must_end_after_it_starts():
    desks = MemoryDesks()
    _with_ticket(desks)
    api = _api(desks)
    # no 'since': it starts now, so an 'until' in the past is a mistake
    status, reason = _run(api.set_away(_staff("duty-desk"), {}, b'{"until": "2026-02-01T00:00:00Z"}', "hh-1"))
    assert status == 400 and "until" in reason
    # ends before it starts
    status, reason = _run(api.set_away(_staff("duty-desk"), {}, b'{"since": "2026-02-02T00:00:00Z", "until": "2026-02-01T00:00:00Z"}', "hh-1"))
    assert status == 400 and "until" in reason
    # an absence recorded after the fact is fine
    status, _ = _run(api.set_away(_staff("duty-desk"), {}, b'{"since": "2026-01-20T00:00:00Z", "until": "2026-02-01T00:00:00Z"}', "hh-1"))
    assert status == 202
    status, body = _run(api.set_away(_staff("duty-desk"), {}, b'{"until": "2026-04-01T00:00:00Z"}', "hh-1"))
    assert status == 202  # MemoryDesks does not apply away mode
    assert desks.sent[-1].set_by == "duty-desk" and desks.sent[-1].set_at == T0
