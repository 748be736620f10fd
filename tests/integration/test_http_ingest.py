"""``POST /api/v1/readings`` on a real worker and broker: who may push what, every body format, the
limits, and nothing lost: what the topics hold afterwards is what the responses said. The same
payloads pushed to ``readings.raw`` over Kafka reach the same outcomes (both doors), and a meter
that moved household takes effect from its ``since``.

One worker for the whole module. The roster is partly loaded before the worker starts (its
enrolment reader catches up at start) and partly after (followed live).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from conftest import WorkerProcess, consume, loads, produce, wait_for_counts

from elderwatch.roster import send_households
from elderwatch.settings import Settings
from elderwatch.users import UserStore
from elderwatch.worker import ensure_topics
from schemas.households import Household
from schemas.users import User

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(hours=20)
MOVE = START + timedelta(hours=10)  # aqua's WM-M moves from hh-old to hh-new
MAX_BODY = 200_000
RATE = 30


def home(household_id: str, meters: str) -> Household:
    return Household(household_id=household_id, community="c", staff={"primary_worker": "w-1"}, meters=meters)


ROSTER_BEFORE = [home("hh-a1", "aqua:WM-1:water;grid:EM-1:electricity"), home("hh-a2", "aqua:WM-2:water"),
                 home("hh-g1", "grid:EM-2:electricity"), home("hh-old", "aqua:WM-M:water")]
ROSTER_AFTER = [home("hh-new", f"aqua:WM-M:water@{MOVE.isoformat()}"), home("hh-a3", "aqua:EM-3:electricity")]


class Clock:
    """A fresh data time for every reading, so each one is recognisable in the topics."""

    def __init__(self) -> None:
        self.k = 0

    def ts(self) -> str:
        self.k += 1
        return (START + timedelta(seconds=7 * self.k)).isoformat()


class Book:
    """What the responses (and the Kafka door's rules) say must be in the topics at the end."""

    def __init__(self) -> None:
        self.validated: Counter = Counter()      # (household, meter, ts) -> n
        self.http_dead: list[tuple[bytes, int, str]] = []   # (original bytes, line, reason)
        self.kafka_dead: Counter = Counter()     # (original bytes, reason) -> n
        self.never: list[str] = []               # ts of readings in refused requests: in no topic
        self.http_accepted = 0                   # lines the HTTP door sent on to readings.raw


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    prefix = f"h{uuid.uuid4().hex[:8]}"
    data = tmp_path_factory.mktemp(prefix)
    users = UserStore(data / "users.json")
    tokens = {}
    for user in (User(user_id="aqua-push", role="utility", utility_id="aqua"),
                 User(user_id="aqua-burst", role="utility", utility_id="aqua"),
                 User(user_id="grid-push", role="utility", utility_id="grid"),
                 User(user_id="w-1", role="staff")):
        users.add(user)
        tokens[user.user_id] = users.issue_token(user.user_id)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=prefix, topic_prefix=f"{prefix}.", partitions=4)
    ensure_topics(settings)
    roster_topic = f"{prefix}.households.roster"
    send_households(ROSTER_BEFORE, bootstrap=kafka_bootstrap, topic=roster_topic)
    worker = WorkerProcess(kafka_bootstrap, prefix, data / "worker", extra_env={
        "ELDERWATCH_USERS_FILE": str(data / "users.json"), "ELDERWATCH_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
        "ELDERWATCH_INGEST_RATE_PER_MIN": str(RATE)}).start()
    send_households(ROSTER_AFTER, bootstrap=kafka_bootstrap, topic=roster_topic)
    meters = sum(len(h.meters) for h in ROSTER_BEFORE + ROSTER_AFTER)
    gauges = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gauges = _gauges(worker)
        if gauges.get("elderwatch_ingest_enrolled_meters") == meters:
            break
        time.sleep(0.3)
    assert gauges.get("elderwatch_ingest_enrolled_meters") == meters, (gauges, worker.log_tail())
    assert gauges.get("elderwatch_ingest_enrolment_ready") == 1
    yield {"worker": worker, "tokens": tokens, "clock": Clock(), "book": Book(), "prefix": prefix,
           "bootstrap": kafka_bootstrap}
    worker.stop()


def _gauges(worker: WorkerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("elderwatch_ingest_enrol")}


def post(world, body: bytes, *, token: str | None = "aqua-push", content_type="application/x-ndjson",
         headers: dict | None = None, raw_token: str | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{world['worker'].port}/api/v1/readings", data=body,
                                     method="POST", headers={"Content-Type": content_type, **(headers or {})})
    if raw_token is not None:
        request.add_header("Authorization", f"Bearer {raw_token}")
    elif token is not None:
        request.add_header("Authorization", f"Bearer {world['tokens'][token]}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def reading(world, **fields) -> dict:
    return {"meter": "water", "ts": world["clock"].ts(), "value": 1.5, **fields}


def line(payload: dict | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def mixed(world) -> list[tuple[bytes, tuple]]:
    """Good and bad readings of every kind for the aqua token, with the outcome each must have:
    ("ok", household, meter, ts) or ("rejected", reason). Fresh times on every call."""
    r = lambda **f: reading(world, **f)  # noqa: E731
    before_move, after_move = (MOVE - timedelta(minutes=1)).isoformat(), (MOVE + timedelta(minutes=1)).isoformat()
    world["clock"].k += 1
    shift = timedelta(seconds=world["clock"].k)  # moved-meter readings differ per call too
    before_move = (MOVE - timedelta(minutes=1) - shift).isoformat()
    after_move = (MOVE + timedelta(minutes=1) + shift).isoformat()
    cases = [
        (r(household_id="hh-a1"), "ok:hh-a1"),
        (r(household_id="hh-a2", utility_id="aqua"), "ok:hh-a2"),
        (r(utility_id="aqua", meter_id="WM-2"), "ok:hh-a2"),
        (r(utility_id="aqua", meter_id="EM-3", meter="electricity", value=0.2), "ok:hh-a3"),  # enrolled after start
        (r(utility_id="aqua", meter_id="WM-M", ts=before_move), "ok:hh-old"),
        (r(utility_id="aqua", meter_id="WM-M", ts=after_move), "ok:hh-new"),
        (r(utility_id="aqua", meter_id="WM-999"), "rejected:unknown_meter"),           # nobody enrolled it
        (r(utility_id="aqua", meter_id="WM-1", meter="electricity"), "rejected:unknown_meter"),  # wrong kind
        (b'{"household_id": "hh-a1", "meter": "water", "ts": ', "rejected:not_json"),
        (r(household_id="hh-a1", meter="gas"), "rejected:unknown_meter_kind"),
        (r(household_id="hh-a1", ts="2026-03-01T07:15:00+0800"), "rejected:invalid_timestamp"),
        (r(household_id="hh-a1", ts=1772348100), "rejected:invalid_timestamp"),
        (r(household_id="hh-a1", value=-1), "rejected:negative_value"),
        (r(household_id="hh-a1", meter_id="WM-1", utility_id="aqua"), "rejected:invalid_field"),
        (b"[1, 2]", "rejected:not_an_object"),
    ]
    out = []
    for payload, outcome in cases:
        data = line(payload)
        if outcome.startswith("ok:"):
            doc = json.loads(data)
            out.append((data, ("ok", outcome[3:], doc["meter"], datetime.fromisoformat(doc["ts"]))))
        else:
            out.append((data, ("rejected", outcome.split(":", 1)[1])))
    return out


def expect_http(world, sent: list[tuple[bytes, tuple]], status: int, body: dict, *, lines: list[int] | None = None,
                originals: list[bytes] | None = None) -> None:
    """Check a 200 response against the expected outcomes and book what the topics must hold."""
    book = world["book"]
    assert status == 200, body
    lines = lines or list(range(1, len(sent) + 1))
    originals = originals or [data for data, _ in sent]
    expected_rejections = [(n, o[1]) for n, (_, o) in zip(lines, sent) if o[0] == "rejected"]
    assert body["accepted"] == len(sent) - len(expected_rejections), body
    assert [(r["line"], r["reason"]) for r in body["rejections"]] == expected_rejections, body
    assert body["rejected"] == len(expected_rejections)
    book.http_accepted += body["accepted"]
    for n, original, (_, outcome) in zip(lines, originals, sent):
        if outcome[0] == "ok":
            book.validated[outcome[1:]] += 1
        else:
            book.http_dead.append((original, n, outcome[1]))


# --- the authorization matrix -------------------------------------------------------------------

def test_without_a_users_token_nothing_is_taken(world):
    ts = world["clock"].ts()
    body = line({"household_id": "hh-a1", "meter": "water", "ts": ts, "value": 1.0})
    world["book"].never.append(ts)
    status, answer, headers = post(world, body, token=None)
    assert status == 401 and "Bearer" in headers.get("WWW-Authenticate", "")
    assert post(world, body, raw_token="not-a-token")[0] == 401
    status, answer, _ = post(world, body, token="w-1")   # a staff member's token
    assert status == 403 and "utility" in answer["error"]


def test_mixed_ndjson_gives_per_line_reasons(world):
    sent = mixed(world)
    body = b"\n".join(data for data, _ in sent) + b"\n"
    status, answer, _ = post(world, body)
    expect_http(world, sent, status, answer)


def test_another_utilitys_household_and_meter(world):
    sent = [
        (line(reading(world, household_id="hh-g1", meter="electricity")), ("rejected", "forbidden")),  # grid's home
        (line(reading(world, utility_id="grid", meter_id="EM-2", meter="electricity")), ("rejected", "forbidden")),
        (line(reading(world, household_id="hh-a1", utility_id="grid")), ("rejected", "forbidden")),
        # grid's meter number under aqua's name: not a meter of aqua's
        (line(reading(world, utility_id="aqua", meter_id="EM-2", meter="electricity")), ("rejected", "unknown_meter")),
    ]
    ok = line(reading(world, household_id="hh-a1"))
    sent.append((ok, ("ok", "hh-a1", "water", datetime.fromisoformat(json.loads(ok)["ts"]))))
    status, answer, _ = post(world, b"\n".join(d for d, _ in sent))
    expect_http(world, sent, status, answer)
    # the household served by both utilities is grid's too
    both = line(reading(world, utility_id="grid", meter_id="EM-1", meter="electricity", value=0.1))
    status, answer, _ = post(world, both, token="grid-push")
    expect_http(world, [(both, ("ok", "hh-a1", "electricity", datetime.fromisoformat(json.loads(both)["ts"])))],
                status, answer)


def test_json_array_csv_and_gzip(world):
    # a JSON array: elements cut from the body as sent
    sent = mixed(world)[:8]
    status, answer, _ = post(world, b"[" + b",\n ".join(d for d, _ in sent) + b"]", content_type="application/json")
    expect_http(world, sent, status, answer)

    # CSV with the utility's columns; a bad row is dead-lettered as the CSV line
    rows = [("hh-a1", "", "", "water", world["clock"].ts(), "2.5"),
            ("", "aqua", "WM-2", "water", world["clock"].ts(), "0.75"),
            ("", "aqua", "WM-404", "water", world["clock"].ts(), "1"),
            ("hh-a2", "", "", "water", world["clock"].ts(), "lots"),
            ("hh-a2", "", "", "water", "2026-03-01T07:15:00+0800", "1")]
    text = ["household_id,utility_id,meter_id,meter,ts,value"] + [",".join(r) for r in rows] + ["hh-a2,water,1"]
    expected = [("ok", "hh-a1", "water", datetime.fromisoformat(rows[0][4])),
                ("ok", "hh-a2", "water", datetime.fromisoformat(rows[1][4])),
                ("rejected", "unknown_meter"), ("rejected", "invalid_field"), ("rejected", "invalid_timestamp"),
                ("rejected", "not_json")]
    csv_lines = [t.encode() for t in text[1:]]
    status, answer, _ = post(world, ("\r\n".join(text) + "\r\n").encode(), content_type="text/csv")
    expect_http(world, list(zip(csv_lines, expected)), status, answer, lines=list(range(2, 8)))

    # gzip NDJSON, in two concatenated gzip members
    sent = mixed(world)[:6]
    half = len(sent) // 2
    body = gzip.compress(b"\n".join(d for d, _ in sent[:half]) + b"\n") + gzip.compress(b"\n".join(d for d, _ in sent[half:]))
    status, answer, _ = post(world, body, headers={"Content-Encoding": "gzip"})
    expect_http(world, sent, status, answer)


def test_limits(world):
    book = world["book"]
    ts = world["clock"].ts()
    book.never.append(ts)
    good = line({"household_id": "hh-a1", "meter": "water", "ts": ts, "value": 1.0})
    # too big as sent (Content-Length says so: nothing is read)
    status, answer, _ = post(world, good + b"\n" + b" " * MAX_BODY)
    assert status == 413 and answer["error"].startswith("body larger")
    # a gzip bomb: 64 MB of blank lines in ~64 KB, stopped once MAX_BODY bytes came out
    bomb = gzip.compress(b"\n" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < MAX_BODY
    status, answer, _ = post(world, bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in answer["error"] and answer["accepted"] == 0, answer
    # not a body of the type it claims; a type we do not take
    status, answer, _ = post(world, b'{"household_id": "hh-a1"}', content_type="application/json")
    assert status == 400 and answer["accepted"] == 0
    assert post(world, good, content_type="text/plain")[0] == 415
    # the rate limit is per token: another aqua token's burst
    statuses = [post(world, b"[]", token="aqua-burst", content_type="application/json") for _ in range(RATE + 1)]
    assert [s for s, _, _ in statuses[:RATE]] == [200] * RATE
    status, answer, headers = statuses[-1]
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert post(world, b"[]", content_type="application/json")[0] == 200  # aqua-push's own bucket is not empty


def test_both_doors_and_nothing_lost(world):
    """The same kinds of payloads through readings.raw reach the same outcomes; then everything the
    module sent is accounted for in the topics, exactly."""
    worker, book = world["worker"], world["book"]
    sent = mixed(world)
    produce(worker.bootstrap, worker.topic("readings.raw"), [(None, data) for data, _ in sent])
    for data, outcome in sent:
        if outcome[0] == "ok":
            book.validated[outcome[1:]] += 1
        else:
            book.kafka_dead[(data, outcome[1])] += 1

    validated = consume(worker.bootstrap, worker.topic("readings.validated"), expected=sum(book.validated.values()),
                        timeout=40, settle=2)
    dead = consume(worker.bootstrap, worker.topic("readings.deadletter"),
                   expected=len(book.http_dead) + sum(book.kafka_dead.values()), timeout=20, settle=1)

    got = Counter()
    for record in validated:
        v = loads(record)
        assert record.key == v["household_id"].encode()
        assert "meter_id" not in v
        got[(v["household_id"], v["meter"], datetime.fromisoformat(v["ts"]))] += 1
    assert got == book.validated, worker.log_tail()

    http_dead, kafka_dead = [], Counter()
    for record in dead:
        envelope = loads(record)
        original = base64.b64decode(envelope["original_value_b64"])
        if envelope["stage"] == "ingest.http":
            assert envelope["source_topic"] == "http:/api/v1/readings" and envelope["source_partition"] == -1
            http_dead.append((original, envelope["source_offset"], envelope["reason"]))
        else:
            kafka_dead[(original, envelope["reason"])] += 1
    assert sorted(http_dead) == sorted(book.http_dead)
    assert kafka_dead == book.kafka_dead

    # refused requests left nothing anywhere
    originals = [original for original, _, _ in http_dead] + list(kafka_dead)
    for ts in book.never:
        assert datetime.fromisoformat(ts) not in {key[2] for key in got}
        assert not any(ts.encode() in (o if isinstance(o, bytes) else o[0]) for o in originals)

    # the metrics count both doors: every HTTP line is accepted (and then received by the Kafka door)
    # or rejected; the Kafka door's identity holds over both
    received = book.http_accepted + len(sent)
    counts = wait_for_counts(worker, lambda c: c.get("received", 0) >= received and c.get("received") == c.get("valid", 0)
                             + c.get("duplicates", 0) + c.get("dead_lettered", 0))
    assert counts["received"] == received == counts["valid"] + counts["duplicates"] + counts["dead_lettered"]
    assert counts["http_rejected"] == len(book.http_dead)
    assert counts["http_lines"] == book.http_accepted + len(book.http_dead)

    # each utility's last reading (ops/prometheus/rules.yml, ElderwatchUtilitySilent) is labelled with the
    # roster's utilities only, never a name a message made up; aqua's readings came in just now
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        page = response.read().decode()
    last = {line.split('utility="', 1)[1].split('"', 1)[0]: float(line.rpartition(" ")[2])
            for line in page.splitlines() if line.startswith("elderwatch_ingest_last_reading_timestamp_seconds{")}
    assert {"aqua", "grid"} <= set(last) <= {"aqua", "grid", "unknown"}, last
    assert time.time() - last["aqua"] < 600, last


def test_roster_export_round_trips_the_enrolments(world, tmp_path, monkeypatch):
    from elderwatch import cli
    from elderwatch.roster import read_households_file

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", world["bootstrap"])
    monkeypatch.setenv("ELDERWATCH_TOPIC_PREFIX", f"{world['prefix']}.")
    out = tmp_path / "households.csv"
    assert cli.main(["roster", "export", "--out", str(out)]) == 0
    households, bad = read_households_file(out)
    assert bad == []
    assert households == sorted(ROSTER_BEFORE + ROSTER_AFTER, key=lambda h: h.household_id)
