"""``POST /api/v1/readings`` (streams/http_ingest.py) on an aiohttp test server with in-memory topics:
the cases a broker adds nothing to (body reading, limits, answers, backpressure). The real-broker
version, with what the topics hold, is tests/integration/test_http_ingest.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from datetime import datetime, timezone

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from elderwatch.settings import Settings
from elderwatch.users import UserStore
from schemas.households import Household
from schemas.users import User
from streams.http_ingest import API_PATH, MAX_IN_FLIGHT, MAX_LINE_BYTES, HttpIngest
from streams.ingest import Enrolment
from streams.metrics import IngestMetrics

NOW = datetime(2026, 3, 2, tzinfo=timezone.utc)
GOOD = b'{"household_id": "hh-1", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 1}'
BY_METER = b'{"utility_id": "aqua", "meter_id": "WM-7", "meter": "water", "ts": "2026-03-01T07:16:00Z", "value": 1}'


class Topic:
    """Records sends; each send's acknowledgement comes ``delay`` seconds later."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []
        self.delay, self.outstanding, self.most_outstanding = delay, 0, 0

    async def send(self, *, key=None, value=None):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.sent.append((key, value))
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)

        def done():
            self.outstanding -= 1
            future.set_result(None)

        loop.call_later(self.delay, done) if self.delay else done()
        return future


class Reader:
    def __init__(self, enrolment: Enrolment, ready: bool = True) -> None:
        self.enrolment, self._ready = enrolment, ready

    async def wait_ready(self, timeout=None) -> bool:
        return self._ready


@pytest.fixture
def setup(tmp_path):
    users = UserStore(tmp_path / "users.json")
    users.add(User(user_id="aqua-push", role="utility", utility_id="aqua"))
    users.add(User(user_id="w-1", role="staff"))
    tokens = {u: users.issue_token(u) for u in ("aqua-push", "w-1")}
    enrolment = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
                                     meters="aqua:WM-7:water")])
    return {"users_file": tmp_path / "users.json", "tokens": tokens, "enrolment": enrolment}


def call(setup, body: bytes, *, content_type="application/x-ndjson", headers=None, token="aqua-push", chunked=False,
         users=True, max_body=10_000, rate=100, delay=0.0, ready=True, requests=1):
    """POST ``body`` ``requests`` times; returns (last status, last JSON answer, raw topic, dead-letter topic, metrics)."""
    settings = Settings(users_file=setup["users_file"] if users else None, ingest_max_body_bytes=max_body,
                        ingest_rate_per_min=rate)
    raw, dead, metrics = Topic(delay), Topic(delay), IngestMetrics()
    ingest = HttpIngest(settings=settings, raw_topic=raw, deadletter_topic=dead,
                        enrolment_reader=Reader(setup["enrolment"], ready), metrics=metrics, clock=lambda: NOW)

    async def run():
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_route("POST", API_PATH, ingest.handle)
        async with TestClient(TestServer(app)) as client:
            sent_headers = {"Content-Type": content_type, **(headers or {})}
            if token:
                sent_headers["Authorization"] = f"Bearer {setup['tokens'][token]}"
            for _ in range(requests):
                data = body
                if chunked:
                    async def stream(payload=body):
                        for i in range(0, len(payload), 1000):
                            yield payload[i:i + 1000]
                    data = stream()
                response = await client.post(API_PATH, data=data, headers=sent_headers)
                answer = await response.json()
            return response.status, answer, dict(response.headers)

    status, answer, headers_out = asyncio.run(run())
    return status, answer, raw, dead, metrics, headers_out


def test_without_users_file_http_ingest_is_off(setup):
    status, answer, raw, dead, *_ = call(setup, GOOD, users=False, token=None)
    assert status == 503 and answer["error"] == "no users file: HTTP ingest is off"
    assert raw.sent == dead.sent == []


def test_staff_token_is_forbidden_and_bad_tokens_unauthorised(setup):
    assert call(setup, GOOD, token="w-1")[0] == 403
    assert call(setup, GOOD, token=None)[0] == 401


def test_ndjson_mixed_lines_sent_as_sent_and_dead_lettered_with_line_numbers(setup):
    body = GOOD + b"\r\n\n" + b"not json\n" + BY_METER + b"\n   \n" + b'{"household_id": "hh-2", "meter": "water", ' \
           b'"ts": "2026-03-01T07:15:00Z", "value": 1}'
    status, answer, raw, dead, metrics, _ = call(setup, body)
    assert status == 200
    assert answer == {"accepted": 2, "rejected": 2, "rejections": [
        {"line": 3, "reason": "not_json", "detail": answer["rejections"][0]["detail"]},
        {"line": 6, "reason": "forbidden", "detail": answer["rejections"][1]["detail"]}]}
    assert raw.sent == [(b"hh-1", GOOD), (b"aqua/WM-7", BY_METER)]
    envelopes = [json.loads(v) for _, v in dead.sent]
    assert [(e["source_offset"], e["stage"], e["source_topic"], e["source_partition"]) for e in envelopes] == [
        (3, "ingest.http", "http:/api/v1/readings", -1), (6, "ingest.http", "http:/api/v1/readings", -1)]
    assert base64.b64decode(envelopes[0]["original_value_b64"]) == b"not json"
    assert dead.sent[1][0] == b"hh-2"  # keyed by the (well-formed) household id, like the Kafka door's
    assert metrics.http_lines.labels(result="accepted")._value.get() == 2
    assert metrics.http_rejected.labels(reason="forbidden")._value.get() == 1
    assert metrics.http_requests.labels(status="200")._value.get() == 1


def test_json_array_elements_are_cut_as_sent(setup):
    body = b"[ " + GOOD + b" ,\n" + BY_METER + b", 42 ]"
    status, answer, raw, dead, *_ = call(setup, body, content_type="application/json")
    assert (status, answer["accepted"], answer["rejections"][0]["line"]) == (200, 2, 3)
    assert [v for _, v in raw.sent] == [GOOD, BY_METER]
    assert base64.b64decode(json.loads(dead.sent[0][1])["original_value_b64"]) == b"42"


@pytest.mark.parametrize("body", [b'{"household_id": "hh-1"}', b"[" + GOOD + b",", b"[" + GOOD + b"] []", b"",
                                  b"[" + GOOD + b", {bad}]"], ids=["object", "unfinished", "trailing", "empty", "bad-element"])
def test_json_that_is_not_an_array_is_400_and_nothing_is_taken(setup, body):
    status, answer, raw, dead, *_ = call(setup, body, content_type="application/json")
    assert status == 400 and raw.sent == dead.sent == []


def test_csv_with_utility_columns(setup):
    body = (b"meter,ts,value,utility_id,meter_id,household_id\r\n"
            b"water,2026-03-01T07:15:00Z,2.5,aqua,WM-7,\r\n"
            b"water,2026-03-01T07:30:00Z,1,,,hh-1\r\n"
            b"water,2026-03-01T07:45:00Z,1,aqua\r\n")
    status, answer, raw, dead, *_ = call(setup, body, content_type="text/csv; charset=utf-8")
    assert status == 200 and answer["accepted"] == 2
    assert answer["rejections"][0]["line"] == 4 and answer["rejections"][0]["reason"] == "not_json"
    assert json.loads(raw.sent[0][1]) == {"utility_id": "aqua", "meter_id": "WM-7", "meter": "water",
                                          "ts": "2026-03-01T07:15:00Z", "value": 2.5}
    assert base64.b64decode(json.loads(dead.sent[0][1])["original_value_b64"]) == b"water,2026-03-01T07:45:00Z,1,aqua"


@pytest.mark.parametrize("body", [b"", b"household_id,meter,ts\n", b"household_id,meter,ts,value,colour\n",
                                  b"meter,ts,value\n"], ids=["empty", "no-value", "unknown-column", "no-household"])
def test_csv_without_its_header_is_400(setup, body):
    assert call(setup, body, content_type="text/csv")[0] == 400


def test_gzip_several_members(setup):
    body = gzip.compress(GOOD + b"\n") + gzip.compress(BY_METER)
    status, answer, raw, *_ = call(setup, body, headers={"Content-Encoding": "gzip"})
    assert status == 200 and answer["accepted"] == 2 and [v for _, v in raw.sent] == [GOOD, BY_METER]


@pytest.mark.parametrize("body, error", [(b"not gzip at all", "not gzip"), (gzip.compress(GOOD * 3)[:-12], "ends early")],
                         ids=["not-gzip", "truncated"])
def test_broken_gzip_is_400(setup, body, error):
    status, answer, *_ = call(setup, body, headers={"Content-Encoding": "gzip"})
    assert status == 400 and error in answer["error"]


def test_gzip_bomb_stops_at_the_decompressed_limit(setup):
    bomb = gzip.compress(GOOD + b"\n" + b"\n" * 50_000_000)
    assert len(bomb) < 100_000
    status, answer, raw, dead, *_ = call(setup, bomb, headers={"Content-Encoding": "gzip"}, max_body=100_000)
    assert status == 413 and "decompressed" in answer["error"]
    # what came before the limit was taken, and the answer says so
    assert answer["accepted"] == 1 and answer["last_line"] == 1 and raw.sent == [(b"hh-1", GOOD)]


def test_body_over_the_limit_without_content_length(setup):
    body = (GOOD + b"\n") * 2000  # ~180 KB, read 64 KiB at a time: the lines of the first piece are taken
    status, answer, raw, *_ = call(setup, body, chunked=True, max_body=100_000)
    assert status == 413 and answer["accepted"] == len(raw.sent) and 0 < answer["accepted"] < 2000
    assert answer["last_line"] == answer["accepted"]


def test_body_over_the_limit_by_content_length_is_not_read(setup):
    status, answer, raw, dead, *_ = call(setup, (GOOD + b"\n") * 10, max_body=100)
    assert status == 413 and raw.sent == dead.sent == [] and answer == {"error": "body larger than 100 bytes"}


def test_a_line_too_long(setup):
    body = GOOD + b"\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n" + GOOD
    status, answer, raw, *_ = call(setup, body, max_body=10 * MAX_LINE_BYTES)
    assert status == 413 and "line 2" in answer["error"] and answer["accepted"] == 1 and len(raw.sent) == 1


@pytest.mark.parametrize("content_type, headers", [("text/plain", {}), ("application/x-ndjson; charset=latin-1", {}),
                                                    ("application/x-ndjson", {"Content-Encoding": "br"})],
                         ids=["text-plain", "latin-1", "brotli"])
def test_unsupported_types_are_415(setup, content_type, headers):
    assert call(setup, GOOD, content_type=content_type, headers=headers)[0] == 415


def test_rate_limit(setup):
    status, answer, raw, dead, metrics, headers = call(setup, b"[]", content_type="application/json", rate=3, requests=4)
    assert status == 429 and int(headers["Retry-After"]) == 20
    assert metrics.http_requests.labels(status="200")._value.get() == 3


def test_not_ready_is_503_with_retry_after(setup):
    status, answer, raw, dead, metrics, headers = call(setup, GOOD, ready=False)
    assert status == 503 and headers["Retry-After"] == "5"


def test_rejections_listed_are_capped(setup):
    status, answer, raw, dead, *_ = call(setup, b"x\n" * 1005, max_body=100_000)
    assert answer["rejected"] == 1005 and len(answer["rejections"]) == 1000 and answer["rejections_truncated"]
    assert len(dead.sent) == 1005


def test_sends_in_flight_are_bounded(setup):
    status, answer, raw, *_ = call(setup, (GOOD + b"\n") * (MAX_IN_FLIGHT * 2 + 10), max_body=1_000_000, delay=0.001)
    assert status == 200 and answer["accepted"] == MAX_IN_FLIGHT * 2 + 10
    assert raw.most_outstanding == MAX_IN_FLIGHT and raw.outstanding == 0
