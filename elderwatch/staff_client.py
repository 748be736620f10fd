"""A small client of the staff API (``/api/v1``), as a community worker's app would call it.

Used by ``make demo`` and the end-to-end tests; the API itself is ``streams/staff_api.py``,
documented by ``GET /api/v1/openapi.json``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class StaffClient:
    """``/api/v1`` as each staff member: with their API token (``tokens``: staff id -> token, from
    ``elderwatch users token``), or with ``X-Staff-Id`` when the worker has no users (development)."""

    def __init__(self, port: int, tokens: dict[str, str] | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.tokens = tokens

    def call(self, method: str, path: str, staff: str, body: dict | None = None,
             key: str | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON body); status 0 when the worker did not answer (busy or stopping)."""
        who = {"X-Staff-Id": staff} if self.tokens is None else {"Authorization": f"Bearer {self.tokens.get(staff, '')}"}
        headers = {**who, "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError) as exc:
            return 0, {"error": f"no answer ({type(exc).__name__})"}

    def tickets(self, staff: str) -> list[dict]:
        status, body = self.call("GET", "/tickets?state=all", staff)
        return body.get("tickets", []) if status == 200 else []

    def ticket(self, ticket_id: str, staff: str) -> dict | None:
        status, body = self.call("GET", f"/tickets/{_quoted(ticket_id)}", staff)
        return body.get("ticket") if status == 200 else None

    def act(self, ticket_id: str, action: str, staff: str, key: str, body: dict) -> tuple[int, dict]:
        return self.call("POST", f"/tickets/{_quoted(ticket_id)}/{action}", staff, body, key)


def _quoted(ticket_id: str) -> str:
    return urllib.parse.quote(ticket_id, safe="")
