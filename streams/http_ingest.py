"""``POST /api/v1/readings``: utilities push readings over HTTP, the second door into ingest.

The first door is the ``readings.raw`` topic. This one does what a Kafka producer of the utility
would, after checking who is calling:

* **auth**: ``Authorization: Bearer <token>`` of a user with role ``utility`` (the users file,
  ``ELDERWATCH_USERS_FILE``); none configured: 503, HTTP ingest is off. 401 without a token or
  with a wrong one, 403 for a token of any other role.
* **limits**: ``ELDERWATCH_INGEST_RATE_PER_MIN`` requests per minute per token (a token bucket;
  429 with ``Retry-After``); ``ELDERWATCH_INGEST_MAX_BODY_BYTES`` caps the body as sent and, with
  ``Content-Encoding: gzip``, as decompressed too (413; a gzip bomb is stopped after that many
  bytes, decompressed piece by piece with zlib's ``max_length``). A line longer than
  :data:`MAX_LINE_BYTES` is a 413 too.
* **bodies**, read as a stream: ``application/x-ndjson`` (one reading per line), ``text/csv``
  (the canonical columns ``household_id,meter,ts,value``, plus optional ``utility_id,meter_id``),
  ``application/json`` (an array of readings; read whole, within the cap). Anything else: 415.
* **per reading** (line, CSV row or array element): the same ``parse_raw`` as the Kafka door, then
  who may send it (:func:`judge_line`): a reading naming another utility, or a household the
  caller's utility does not serve (has no meter of it enrolled), is ``forbidden``; a meter of this
  utility that no household has enrolled at the reading's time is ``unknown_meter``.
* Accepted readings go to ``readings.raw`` **as sent** (a CSV row as the JSON reading it
  describes), keyed by the household id or ``utility_id/meter_id``; the Kafka door then takes them
  like any other. Rejected ones go to ``readings.deadletter`` as the Kafka door's rejections do,
  original bytes and all (stage ``ingest.http``, source ``http:/api/v1/readings``, partition -1,
  offset = the line number). Every send is awaited (the broker's acknowledgement) before the
  response, at most :data:`MAX_IN_FLIGHT` at a time, so a slow broker slows the request.
* **response** 200: ``{"accepted", "rejected", "rejections": [{"line", "reason", "detail"}, ...]}``
  (the first :data:`MAX_REJECTIONS_LISTED`; ``rejections_truncated`` says when there were more).
  What the topics hold afterwards is what the response says. A body that is not what its content
  type says at all (a JSON body that is not an array, a CSV without its header, broken gzip) is a
  400; a request stopped part way (400 for broken gzip, 413) still says what it had taken up to
  then (``accepted``, ``rejected``, ``last_line``): those lines are in the topics, nothing after
  them was read. A 400 body is not dead-lettered: nothing of it was taken, and the caller, who
  still has it, is told so.

Privacy: logs and metrics carry counts and reasons, never ids, tokens or readings.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from elderwatch.canonical_csv import HEADER as CSV_COLUMNS
from elderwatch.canonical_csv import OPTIONAL_COLUMNS as CSV_OPTIONAL_COLUMNS
from elderwatch.canonical_csv import reading_json
from schemas.dead_letter import DeadLetter, RejectReason
from streams.ingest.enrolment import Enrolment, resolve
from streams.ingest.parse import Rejection, parse_raw

log = logging.getLogger(__name__)

API_PATH = "/api/v1/readings"
SOURCE_TOPIC = "http:/api/v1/readings"
STAGE = "ingest.http"
MAX_LINE_BYTES = 64 * 1024
MAX_REJECTIONS_LISTED = 1000
MAX_IN_FLIGHT = 256
READY_WAIT_S = 10.0
_CHUNK = 64 * 1024

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"})
JSON_TYPES = frozenset({"application/json"})
CSV_TYPES = frozenset({"text/csv"})


# -- one reading: who may send it ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Accepted:
    key: bytes            # readings.raw key: the household id, or utility_id/meter_id
    household_id: str


def judge_line(payload: bytes, utility_id: str, enrolment: Enrolment, *, now: datetime,
               max_future: timedelta = timedelta(hours=1)) -> Accepted | Rejection:
    """A reading pushed by ``utility_id``'s token: accepted (with its raw key) or a rejection.

    >>> from schemas.households import Household
    >>> e = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
    ...                          meters="aqua:WM-7:water"),
    ...                Household(household_id="hh-2", community="c", staff={"primary_worker": "w-1"},
    ...                          meters="grid:EM-1:electricity")])
    >>> now = datetime.fromisoformat("2026-03-02T00:00:00Z")
    >>> judge = lambda text: judge_line(text.encode(), "aqua", e, now=now)
    >>> judge('{"household_id": "hh-1", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 1}')
    Accepted(key=b'hh-1', household_id='hh-1')
    >>> judge('{"utility_id": "aqua", "meter_id": "WM-7", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 1}')
    Accepted(key=b'aqua/WM-7', household_id='hh-1')
    >>> judge('{"household_id": "hh-2", "meter": "water", "ts": "2026-03-01T07:15:00Z", "value": 1}').reason.value
    'forbidden'
    >>> judge('{"utility_id": "grid", "meter_id": "EM-1", "meter": "electricity", "ts": "2026-03-01T07:15:00Z", "value": 1}').reason.value
    'forbidden'
    >>> judge('{"utility_id": "aqua", "meter_id": "EM-1", "meter": "electricity", "ts": "2026-03-01T07:15:00Z", "value": 1}').reason.value
    'unknown_meter'
    """
    result = parse_raw(payload, now=now, max_future=max_future)
    if isinstance(result, Rejection):
        return result
    reading = result.reading
    if reading.utility_id is not None and reading.utility_id != utility_id:
        return Rejection(RejectReason.FORBIDDEN, "utility_id: not the utility of this token", reading.household_id)
    if reading.meter_id is not None:
        mapped = resolve(reading, enrolment)
        if isinstance(mapped, Rejection):
            return mapped
        return Accepted(f"{reading.utility_id}/{reading.meter_id}".encode(), mapped.household_id)
    if not enrolment.serves(utility_id, reading.household_id):
        return Rejection(RejectReason.FORBIDDEN, "household_id: not a household this utility serves (none of its "
                                                 "meters is enrolled there)", reading.household_id)
    return Accepted(reading.household_id.encode(), reading.household_id)


# -- rate limit ----------------------------------------------------------------------------------

class TokenBucket:
    """``rate_per_min`` requests a minute per key, in bursts of up to ``rate_per_min``.

    >>> t = [0.0]
    >>> bucket = TokenBucket(2, clock=lambda: t[0])
    >>> bucket.take("k"), bucket.take("k"), bucket.take("k")
    (0.0, 0.0, 30.0)
    >>> t[0] = 30.0
    >>> bucket.take("k"), bucket.take("other")
    (0.0, 0.0)
    """

    def __init__(self, rate_per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(rate_per_min)
        self.per_second = rate_per_min / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 if a request may go now (and counts it), else the seconds until one may."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.per_second


# -- reading the body ------------------------------------------------------------------------------

class BodyError(Exception):
    """The request stops here: ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def body_chunks(chunks: AsyncIterator[bytes], *, gzip: bool, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's bytes, decompressed if ``gzip``; BodyError(413) past ``max_bytes`` as sent or as
    decompressed (decompressed at most 64 KiB at a time, so a bomb costs no memory), BodyError(400)
    for data that is not gzip or ends early."""
    received = produced = 0
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    async for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise BodyError(413, f"body larger than {max_bytes} bytes")
        if inflate is None:
            yield chunk
            continue
        data = chunk
        while data:
            if inflate.eof:  # a gzip member ended and more follows: the next member (concatenated gzip)
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                piece = inflate.decompress(data, _CHUNK)
            except zlib.error:
                raise BodyError(400, "Content-Encoding: gzip, but the body is not gzip data") from None
            produced += len(piece)
            if produced > max_bytes:
                raise BodyError(413, f"body larger than {max_bytes} bytes once decompressed")
            if piece:
                yield piece
            data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
    if inflate is not None and received and not inflate.eof:
        raise BodyError(400, "Content-Encoding: gzip, but the gzip data ends early")


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line (``\\r\\n`` or ``\\n``); BodyError(413) for a
    line longer than :data:`MAX_LINE_BYTES`."""
    number = 0
    rest = b""
    async for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            number += 1
            if len(part) > MAX_LINE_BYTES:
                raise BodyError(413, f"line {number} is longer than {MAX_LINE_BYTES} bytes")
            part = part[:-1] if part.endswith(b"\r") else part
            if part.strip():
                yield number, part
        if len(rest) > MAX_LINE_BYTES:
            raise BodyError(413, f"line {number + 1} is longer than {MAX_LINE_BYTES} bytes")
    if rest.strip():
        yield number + 1, rest[:-1] if rest.endswith(b"\r") else rest


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def array_elements(text: str) -> list[tuple[int, bytes]]:
    """``(element number, the element's bytes as sent)`` of a JSON array; BodyError(400) if ``text`` is
    not one. Elements are cut from the text, not re-serialised: ``parse_raw`` sees what was sent.

    >>> array_elements('[{"a": 1} , 7,{"b": NaN}]')
    [(1, b'{"a": 1}'), (2, b'7'), (3, b'{"b": NaN}')]
    """
    decoder = json.JSONDecoder(parse_constant=lambda _: None)  # boundaries only; parse_raw refuses NaN
    position = _JSON_SPACE.match(text, 0).end()
    if not text.startswith("[", position):
        raise BodyError(400, "application/json: the body must be a JSON array of readings")
    position = _JSON_SPACE.match(text, position + 1).end()
    elements: list[tuple[int, bytes]] = []
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            try:
                _, end = decoder.raw_decode(text, position)
            except (ValueError, RecursionError):
                raise BodyError(400, f"application/json: not a JSON array (element {len(elements) + 1} is not JSON)") from None
            elements.append((len(elements) + 1, text[position:end].encode("utf-8")))
            position = _JSON_SPACE.match(text, end).end()
            if text.startswith(",", position):
                position = _JSON_SPACE.match(text, position + 1).end()
            elif text.startswith("]", position):
                position += 1
                break
            else:
                raise BodyError(400, f"application/json: not a JSON array (after element {len(elements)})")
    if _JSON_SPACE.match(text, position).end() != len(text):
        raise BodyError(400, "application/json: data after the array")
    return elements


def csv_header(line: bytes) -> list[str]:
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BodyError(400, "text/csv: the header is not UTF-8") from None
    columns = [c.strip() for c in next(csv.reader([text]))]
    allowed = (*CSV_COLUMNS, *CSV_OPTIONAL_COLUMNS)
    unknown = [c for c in columns if c not in allowed]
    missing = [c for c in ("meter", "ts", "value") if c not in columns]
    if unknown or missing or len(set(columns)) != len(columns) or not (
            "household_id" in columns or {"utility_id", "meter_id"} <= set(columns)):
        raise BodyError(400, f"text/csv: the first line must be the header {','.join(CSV_COLUMNS)} (utility_id,meter_id "
                             f"may be added, household_id then left out or empty)")
    return columns


def csv_row(columns: list[str], line: bytes) -> bytes | Rejection:
    """A CSV row as its JSON reading, or why it is not a row of this file."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_JSON, f"CSV row: not UTF-8 at byte {exc.start}")
    try:
        fields = next(csv.reader([text]))
    except csv.Error as exc:
        return Rejection(RejectReason.NOT_JSON, f"CSV row: {exc}")
    if len(fields) != len(columns):
        return Rejection(RejectReason.NOT_JSON, f"CSV row: {len(fields)} fields, the header has {len(columns)}")
    return reading_json(dict(zip(columns, fields)))


# -- the handler -----------------------------------------------------------------------------------

class HttpIngest:
    """The route's handler, with what it needs: users, enrolments, the two topics, metrics."""

    def __init__(self, *, settings, raw_topic, deadletter_topic, enrolment_reader, metrics,
                 clock: Callable[[], datetime], users=None) -> None:
        from elderwatch.users import UserStore

        self.settings = settings
        self.raw, self.deadletter = raw_topic, deadletter_topic
        self.reader = enrolment_reader
        self.metrics = metrics
        self.clock = clock
        self.users = users if users is not None else (UserStore(settings.users_file) if settings.users_file else None)
        self.bucket = TokenBucket(settings.ingest_rate_per_min)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            response = await self._handle(request)
        except BodyError as exc:  # before anything was taken
            response = _error(exc.status, exc.message)
        self.metrics.http_requests.labels(status=str(response.status)).inc()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        from elderwatch.users import Role, UsersError, token_hash

        if self.users is None:
            return _error(503, "no users file: HTTP ingest is off")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Authorization: Bearer <token> required", headers={"WWW-Authenticate": "Bearer"})
        try:
            user = self.users.by_token(token)
        except UsersError:
            log.error("HTTP ingest: the users file cannot be read")
            return _error(503, "users file cannot be read: HTTP ingest is off")
        if user is None:
            return _error(401, "unknown token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if user.role is not Role.UTILITY:
            return _error(403, "only a utility's token may push readings")
        wait = self.bucket.take(token_hash(token))
        if wait:
            return _error(429, f"more than {self.settings.ingest_rate_per_min} requests a minute",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})

        kind = _body_kind(request)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            return _error(415, "Content-Encoding: only gzip (or none)")
        limit = self.settings.ingest_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"body larger than {limit} bytes")
        if not await self.reader.wait_ready(READY_WAIT_S):
            return _error(503, "enrolments still loading; try again", headers={"Retry-After": "5"})

        chunks = body_chunks(request.content.iter_chunked(_CHUNK), gzip=encoding in ("gzip", "x-gzip"), max_bytes=limit)
        run = _Run(self, user.utility_id, int(time.time() * 1000))
        try:
            if kind == "json":
                body = bytearray()
                async for chunk in chunks:
                    body += chunk
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    raise BodyError(400, "application/json: the body is not UTF-8") from None
                del body
                for number, element in array_elements(text):
                    await run.line(number, element, element)
            elif kind == "ndjson":
                async for number, line in lines(chunks):
                    await run.line(number, line, line)
            else:
                columns = None
                async for number, line in lines(chunks):
                    if columns is None:
                        columns = csv_header(line)
                        continue
                    row = csv_row(columns, line)
                    await run.line(number, line, row)
                if columns is None:
                    raise BodyError(400, "text/csv: empty body (no header)")
        except BodyError as exc:
            await run.settle()
            status, error = exc.status, exc.message
        except Exception:
            await run.settle(raise_errors=False)
            log.exception("HTTP ingest: a send failed")
            status, error = 503, "could not write to Kafka; the counts say what was taken"
        else:
            try:
                await run.settle()
            except Exception:
                log.exception("HTTP ingest: a send failed")
                status, error = 503, "could not write to Kafka; the counts say what was taken"
            else:
                status, error = 200, None
        log.info("POST %s: %d, %d accepted, %d rejected", API_PATH, status, run.accepted, run.rejected)
        return web.json_response(run.report(error), status=status)


class _Run:
    """One request's lines: sends in flight (bounded), counts of what the broker acknowledged."""

    def __init__(self, ingest: HttpIngest, utility_id: str, received_ms: int) -> None:
        self.ingest, self.utility_id, self.received_ms = ingest, utility_id, received_ms
        self.enrolment = ingest.reader.enrolment
        self.accepted = self.rejected = 0
        self.last_line = 0
        self.rejections: list[dict] = []
        self.inflight: deque = deque()

    async def line(self, number: int, original: bytes, payload: bytes | Rejection) -> None:
        ingest = self.ingest
        if isinstance(payload, Rejection):
            verdict = payload
        else:
            verdict = judge_line(payload, self.utility_id, self.enrolment, now=ingest.clock(),
                                 max_future=ingest.settings.max_future)
        if isinstance(verdict, Accepted):
            future = await ingest.raw.send(key=verdict.key, value=payload)
            self.inflight.append((future, number, None))
        else:
            envelope = DeadLetter.for_message(
                original, None, verdict.reason, verdict.detail, stage=STAGE, topic=SOURCE_TOPIC, partition=-1,
                offset=number, at=ingest.clock(), timestamp_ms=self.received_ms, household_id=verdict.household_id)
            key = verdict.household_id.encode() if verdict.household_id else None
            future = await ingest.deadletter.send(key=key, value=envelope.model_dump_json().encode())
            self.inflight.append((future, number, verdict))
        while len(self.inflight) >= MAX_IN_FLIGHT:
            await self._settle_one()

    async def _settle_one(self) -> None:
        future, number, rejection = self.inflight.popleft()
        await future  # the broker's acknowledgement (raises if the send failed)
        metrics = self.ingest.metrics
        self.last_line = max(self.last_line, number)
        if rejection is None:
            self.accepted += 1
            metrics.http_lines.labels(result="accepted").inc()
            return
        self.rejected += 1
        metrics.http_lines.labels(result="rejected").inc()
        metrics.http_rejected.labels(reason=rejection.reason.value).inc()
        if len(self.rejections) < MAX_REJECTIONS_LISTED:
            self.rejections.append({"line": number, "reason": rejection.reason.value, "detail": rejection.detail})

    async def settle(self, *, raise_errors: bool = True) -> None:
        while self.inflight:
            try:
                await self._settle_one()
            except Exception:
                if raise_errors:
                    raise

    def report(self, error: str | None) -> dict:
        body: dict = {"accepted": self.accepted, "rejected": self.rejected, "rejections": self.rejections}
        if self.rejected > len(self.rejections):
            body["rejections_truncated"] = True
        if error is not None:
            body = {"error": error, **body, "last_line": self.last_line}
        return body


def _body_kind(request: web.Request) -> str:
    content_type = request.content_type.lower()  # aiohttp: without parameters; none given reads as octet-stream
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise BodyError(415, "only UTF-8 bodies")
    if content_type in NDJSON_TYPES:
        return "ndjson"
    if content_type in JSON_TYPES:
        return "json"
    if content_type in CSV_TYPES:
        return "csv"
    raise BodyError(415, "Content-Type: application/x-ndjson, application/json (an array) or text/csv")


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def register_http_ingest(app, topics, enrolment_reader, metrics, settings, *, clock: Callable[[], datetime]) -> HttpIngest:
    """Add ``POST /api/v1/readings`` to the worker's web server (a plain aiohttp route)."""
    ingest = HttpIngest(settings=settings, raw_topic=topics.raw, deadletter_topic=topics.deadletter,
                        enrolment_reader=enrolment_reader, metrics=metrics, clock=clock)
    app.web.web_app.router.add_route("POST", API_PATH, ingest.handle)
    return ingest


__all__ = ["API_PATH", "Accepted", "HttpIngest", "TokenBucket", "array_elements", "body_chunks", "judge_line", "lines",
           "register_http_ingest"]
