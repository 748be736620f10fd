"""``make demo``: a local broker, the worker and a simulated messy feed; tickets appear and a
simulated community worker acts on them through the staff API.

In order:

1. a broker (``$KAFKA_BOOTSTRAP_SERVERS``, or a local one started here); ``--households`` x
   ``--days`` simulated, their anomalies injected after the detectors' 21-day warm-up when the
   data leaves a week for them;
2. the worker, with its own app id, topic prefix and web port, the households' time zones
   (``ELDERWATCH_HOUSEHOLDS_FILE``), a 2 s deadline timer and short acknowledgement deadlines
   (0.5 / 0.75 / 1 min by severity instead of 15 / 60 / 480), so escalations show within a demo;
3. the roster (the simulation's households.csv) into ``households.roster``; the staff API's
   address and a ``curl`` to try are printed;
4. the readings fed with 3 % duplicates and garbage; every 2 s one status line: the ingest
   counts, the data day detection has reached, warnings raised, tickets by state;
5. each new ticket printed as staff see it (``GET /api/v1/tickets?state=all``, asked as the
   fewest staff who together look after every household), and each escalation;
6. a community worker (a thread: the feed and the status line never wait for it) takes the first
   three welfare tickets through the API: acknowledge as the assignee, handle with visit
   notes, feedback (false_alarm, needed_help, benign_explained in turn), then waits for detection
   to learn from the outcome and close the ticket, and prints what detection did with the outcome
   (its sensitivity for that household and kind: a single false alarm does not lower it);
7. after ``--seconds`` (0: until Ctrl-C) the feed stops and the worker drains; the ingest identity
   and a loop summary from /metrics are printed; everything started is stopped.

Exit code 0 only when

* the ingest books balance: sent = received = valid + duplicates + dead-lettered, none in flight;
* and the loop went round, judged on welfare tickets (``meter_offline`` ones go to the utility's
  data-quality desk and close themselves):

  - a welfare ticket opened: at least one was taken through acknowledge, handle and feedback to
    ``closed`` via the API (the demo keeps acting during the drain to finish one);
  - none opened although detection raised a welfare warning: the loop is broken;
  - no welfare warning at all: fine while the data past the detectors' 21-day warm-up is short
    (under :data:`TICKETS_EXPECTED_AFTER` household-days: the run was too short to tell, and the
    demo says so); more than that without one means detection is broken.

Pace, measured on 2 cores: the worker runs ingest, detect and tickets in one process at roughly
650-750 readings/s, so the time to the first ticket is set by how many readings 21 days of the
households are, not by the feed's speed: 40 households need ~4 minutes, 10 about 75 s. The
default, 8 households x 35 days at 36000x (10 data-hours a second, 640 readings/s, about what
the worker keeps up with), has its first tickets after about a minute and the community worker's
first one closed some 15 s later, so ``make demo DEMO_SECONDS=120`` shows the whole loop.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from detectors.monitor import MonitorConfig
from elderwatch.staff_client import StaffClient
from streams.metrics import read_counts, settled

_COLUMNS = ("received", "valid", "duplicates", "dead_lettered")
_STATUS_EVERY_S = 2.0
#: The detectors raise no welfare warning before this many days of a household's data.
DETECTOR_WARMUP_DAYS = int(MonitorConfig().warmup_days)
#: Household-days of data past the warm-up after which no welfare warning at all means detection is
#: broken: the simulated households raise about one per 8-13 household-days there (10 x 35 days: 17 in
#: 140; 40 x 35: 42 in 560), so 100 without one is not chance. Fewer: the run was too short to tell.
TICKETS_EXPECTED_AFTER = 100
#: Short acknowledgement deadlines, so a ticket nobody takes escalates within the demo. Data runs
#: 36000 times faster than the wall clock the deadlines use: an inactivity episode ends in the data
#: (water runs again) seconds after its ticket opened, which lowers the ticket to low severity.
_DEMO_ACK_TIMEOUT_MIN = {"high": 0.5, "medium": 0.75, "low": 1}
#: What the community worker finds, in turn: one outcome per ticket, and the visit's notes.
_VISITS = (("false_alarm", "visited: all well, she was in the garden"),
           ("needed_help", "visited: a fall yesterday, bruised but up; GP appointment booked"),
           ("benign_explained", "called: family staying this week, so a different routine"))
#: How many welfare tickets the community worker takes through the loop (the rest show the timer at work).
ACT_ON = 3
_DRAIN_S = 90.0

_print_lock = threading.Lock()


def _say(line: str) -> None:
    # The status loop and the community worker both print: whole lines, never interleaved.
    with _print_lock:
        print(line, flush=True)


# -- /metrics -----------------------------------------------------------------------------------

def _metrics_page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def _wait_ready(port: int, worker: subprocess.Popen, stop: threading.Event, timeout_s: float = 120.0) -> bool:
    """Wait until the worker's /ready says 200 (tables recovered, agents running); False on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.poll() is None and not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:  # 503 (HTTPError is an OSError) or not answering yet
            pass
        time.sleep(0.5)
    return False


def _by_label(page: str, sample: str, label: str) -> dict[str, float]:
    """``{label value: sample value}`` for one labelled sample of a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels[label]: s.value for family in text_string_to_metric_families(page)
            for s in family.samples if s.name == sample and label in s.labels}


def _value(page: str, sample: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    return next((s.value for family in text_string_to_metric_families(page)
                 for s in family.samples if s.name == sample and not s.labels), None)


def _in_flight(counts: dict[str, float]) -> int:
    return int(counts.get("received", 0) - settled(counts))


def _detect_behind(page: str) -> int:
    """Readings emitted by ingest that detection has not finished with yet."""
    ingest, detect = read_counts(page), read_counts(page, "detect")
    done = sum(detect.get(k, 0) for k in ("processed", "redelivered", "dead_lettered", "failed"))
    return int(ingest.get("emitted", 0) - done)


def _label(ticket: dict) -> str:
    return f"{ticket['household_id']} {ticket['kind']}"


def watchers(households) -> list[str]:
    """The fewest staff (greedily) who together look after every household: each sees the tickets of
    the households whose chain names them, so polling as these sees every ticket.

    >>> from schemas.households import Household
    >>> rows = [("h-1", "w-1", "s-1"), ("h-2", "w-2", "s-1"), ("h-3", "w-3", None)]
    >>> watchers([Household.from_csv_row({"household_id": h, "community": "c", "primary_worker": w,
    ...                                   "supervisor": s or ""}) for h, w, s in rows])
    ['s-1', 'w-3']
    """
    seen_by: dict[str, set[str]] = {}
    for h in households:
        for person in (h.staff.primary_worker, h.staff.backup_worker, h.staff.supervisor):
            if person:
                seen_by.setdefault(person, set()).add(h.household_id)
    uncovered = {h.household_id for h in households}
    chosen: list[str] = []
    while uncovered:
        best = max(sorted(seen_by), key=lambda p: len(seen_by[p] & uncovered))
        chosen.append(best)
        uncovered -= seen_by[best]
    return chosen


class TicketWatch:
    """The tickets staff see, polled; says which are new and which escalated since the last poll."""

    def __init__(self, client: StaffClient, staff: list[str]) -> None:
        self.client, self.staff = client, staff
        self.tickets: dict[str, dict] = {}  # ticket_id -> latest summary
        self.seen_as: dict[str, str] = {}  # ticket_id -> a staff id that may read it

    def poll(self) -> tuple[list[dict], list[dict]]:
        new, escalated = [], []
        for person in self.staff:
            for summary in self.client.tickets(person):
                before = self.tickets.get(summary["ticket_id"])
                if before is None:
                    new.append(summary)
                elif summary["state"] == "escalated" and (before["state"] != "escalated"
                                                          or summary["assignee"] != before["assignee"]):
                    escalated.append(summary)
                self.tickets[summary["ticket_id"]] = summary
                self.seen_as[summary["ticket_id"]] = person
        return sorted(new, key=lambda t: t["opened_at"]), escalated

    def by_state(self) -> Counter:
        return Counter(t["state"] for t in self.tickets.values())

    def welfare_opened(self) -> int:
        from dispatch.tickets import WELFARE_KINDS

        return sum(t["kind"] in WELFARE_KINDS for t in self.tickets.values())


def _opened_line(summary: dict, detail: dict | None) -> str:
    # An open ticket is being dispatched to the first of its chain; say who it goes to.
    assignee = (detail or summary).get("assignee") or ((detail or {}).get("chain") or ["?"])[0]
    text = (detail or {}).get("summary") or ""
    return f'ticket opened: {_label(summary)} {summary["severity"]} -> {assignee} "{text}"'


# -- the community worker -----------------------------------------------------------------------

class CommunityWorker(threading.Thread):
    """Takes the first ``limit`` welfare tickets through the API as the person they are assigned to
    would: acknowledge, handle (visit notes), feedback; then waits for detection to close them."""

    def __init__(self, client: StaffClient, *, limit: int, bootstrap: str, feedback_acks: str) -> None:
        super().__init__(name="community-worker", daemon=True)
        self.client, self.limit, self.bootstrap, self.feedback_acks = client, limit, bootstrap, feedback_acks
        self.inbox: queue.Queue[tuple[str, str]] = queue.Queue()
        self.taken = 0
        self.closed: list[str] = []
        self.busy = threading.Event()
        self.quit = threading.Event()

    def offer(self, ticket_id: str, readable_as: str) -> None:
        if self.taken < self.limit:
            self.taken += 1
            self.busy.set()  # set here, not in run(): the caller may ask "idle?" before the thread wakes
            self.inbox.put((ticket_id, readable_as))

    def idle(self) -> bool:
        return not self.busy.is_set() and self.inbox.empty()

    def run(self) -> None:
        n = 0
        while not self.quit.is_set():
            try:
                ticket_id, readable_as = self.inbox.get(timeout=0.5)
            except queue.Empty:
                self.busy.clear()
                continue
            self.busy.set()
            try:
                self._walk(ticket_id, readable_as, _VISITS[n % len(_VISITS)], n)
            except Exception as exc:  # a demo step failing must not take the demo down; say so
                _say(f"  community worker: gave up on a ticket ({type(exc).__name__}: {exc})")
            n += 1
            if self.inbox.empty():
                self.busy.clear()

    def _walk(self, ticket_id: str, readable_as: str, visit: tuple[str, str], n: int) -> None:
        outcome, notes = visit
        ticket = self._until(ticket_id, readable_as, lambda t: t["state"] in ("dispatched", "escalated"), 30)
        if ticket is None:
            _say(f"  community worker: {ticket_id} was not dispatched within 30 s; left alone")
            return
        person = ticket["assignee"]  # whoever it is with now: the primary worker, or the backup after an escalation
        for action, body in (("acknowledge", {}), ("handle", {"notes": notes}), ("feedback", {"outcome": outcome})):
            if self.quit.is_set() or self._act(ticket, action, person, f"demo-{n}-{action}", body) is None:
                return
        done = self._until(ticket_id, person, lambda t: t["state"] == "closed", 60)
        if done is None:
            _say(f"  community worker: {_label(ticket)} not closed within 60 s of the feedback")
            return
        self.closed.append(ticket_id)
        _say(f"ticket closed: {_label(ticket)} outcome {done['outcome']}; {self._learned(ticket_id)}")

    def _act(self, ticket: dict, action: str, person: str, key: str, body: dict) -> dict | None:
        """POST one action, printing each call; the ticket after it, or None. A 202 (on its topic, not
        applied yet) is asked again with the same Idempotency-Key: that tells the result without acting twice."""
        for _ in range(6):
            status, answer = self.client.act(ticket["ticket_id"], action, person, key, body)
            if status == 200:
                result = f"{answer['result']}, state {answer['ticket']['state']}"
            elif status == 202:
                result = "pending: asking again with the same Idempotency-Key"
            else:
                result = answer.get("error", "")
            shown = f" {json.dumps(body)}" if body else ""
            _say(f"  api: POST {action}{shown} {_label(ticket)} as {person} -> {status} {result}")
            if status != 202:
                return answer["ticket"] if status == 200 else None
            time.sleep(1.0)
        return None

    def _until(self, ticket_id: str, staff: str, done, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        while not self.quit.is_set() and time.monotonic() < deadline:
            ticket = self.client.ticket(ticket_id, staff)
            if ticket is not None and done(ticket):
                return ticket
            time.sleep(0.5)
        return None

    def _learned(self, ticket_id: str) -> str:
        """What detection did with the outcome: its ack on tickets.feedback.ack (the API does not show it)."""
        from dispatch.audit import parse_ack
        from elderwatch.topic_reader import read_to_end

        try:
            records = read_to_end(self.bootstrap, [self.feedback_acks], timeout_s=10)
        except (TimeoutError, OSError) as exc:
            return f"sensitivity not read ({type(exc).__name__})"
        for record in reversed(records):
            ack = parse_ack(record.value)
            if ack is not None and ack.by == "detect" and ack.ticket_id == ticket_id and ack.detection:
                # e.g. "false_alarm for inactivity: 1 of 2 not needed before sensitivity is lowered"
                return f"detection: {ack.detection['reason']}"
        return "detection's ack not found"


# -- where the data is --------------------------------------------------------------------------

@dataclass(frozen=True)
class DataClock:
    """The data day detection has reached, from how many readings it processed (the feed is in time order).
    Exact for a paced feed; at ``max`` speed the partitions run unevenly, so it is a mean over households."""

    seconds: list[float]  # each clean reading's data time, from the first, in feed order

    @classmethod
    def of(cls, readings) -> "DataClock":
        first = readings[0].ts.timestamp() if readings else 0.0
        return cls([m.ts.timestamp() - first for m in readings])

    def day(self, processed: float) -> float:
        n = min(int(processed), len(self.seconds))
        return self.seconds[n - 1] / 86400 if n else 0.0

    def wall_seconds_to(self, day: float, speed: float | None) -> float | None:
        """Feed time until data ``day`` at ``speed`` (None: unpaced, or the data ends before it)."""
        if speed is None or not self.seconds or self.seconds[-1] < day * 86400:
            return None
        return day * 86400 / speed


# -- lines --------------------------------------------------------------------------------------

def _line(elapsed: float, counts: dict[str, float], sent: int) -> str:
    cells = "  ".join(f"{name.replace('_', '-')} {int(counts.get(name, 0)):>7,}" for name in _COLUMNS)
    return f"[{elapsed:6.1f}s] sent {sent:>7,}  {cells}  in-flight {_in_flight(counts):>6,}"


_STATE_ORDER = ("open", "dispatched", "escalated", "accepted", "snoozed", "handled", "feedback_recorded", "closed",
                "cancelled")


def _loop_cells(page: str, day: float, watch: TicketWatch) -> str:
    warnings = int(read_counts(page, "detect").get("warnings", 0))
    states = watch.by_state()
    tickets = " ".join(f"{states[s]} {s}" for s in _STATE_ORDER if states[s]) or "none yet"
    return f" | day {day:4.1f}  warnings {warnings:>3}  tickets: {tickets}"


def _print_loop_intro(client: StaffClient, roster, staff: list[str], prefix: str, tokens: dict[str, str]) -> None:
    print(f"roster: {len(roster)} households loaded into {prefix}households.roster; "
          f"tickets watched as {', '.join(staff)}", flush=True)
    print(f"staff API: {client.base}  (OpenAPI: {client.base}/openapi.json). Try:\n"
          f"  curl -s -H 'Authorization: Bearer {tokens[roster[0].staff.primary_worker]}' "
          f"'{client.base}/tickets?state=all'", flush=True)
    print(f"demo deadlines: a dispatch not acknowledged within "
          f"{' / '.join(str(m) for m in _DEMO_ACK_TIMEOUT_MIN.values())} min ({' / '.join(_DEMO_ACK_TIMEOUT_MIN)} "
          f"severity) escalates to the next person (production: 15 / 60 / 480)", flush=True)


def _identity_line(counts: dict[str, float], sent: int, balanced: bool) -> str:
    return (f"identity: sent {sent:,} = received {int(counts.get('received', 0)):,} = valid {int(counts.get('valid', 0)):,} "
            f"+ duplicates {int(counts.get('duplicates', 0)):,} + dead-lettered {int(counts.get('dead_lettered', 0)):,}"
            f"  -> {'OK' if balanced else 'NOT DRAINED (see in-flight)'}")


def _loop_summary(page: str) -> list[str]:
    opened = {k: int(v) for k, v in _by_label(page, "elderwatch_tickets_opened_total", "kind").items() if v}
    outcomes = {k: int(v) for k, v in _by_label(page, "elderwatch_tickets_outcomes_total", "outcome").items() if v}
    warned = {k: int(v) for k, v in _by_label(page, "elderwatch_detect_warnings_total", "kind").items() if v}
    moved = {k: int(v) for k, v in _by_label(page, "elderwatch_detect_sensitivity_changes_total", "direction").items() if v}
    ratio = _value(page, "elderwatch_tickets_valid_alert_ratio")
    welfare_outcomes = sum(v for k, v in outcomes.items() if k != "meter_fault")  # the ratio's denominator
    shown = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"  # noqa: E731
    return ["loop (from /metrics):",
            f"  warnings raised    {shown(warned)}",
            f"  tickets opened     {shown(opened)}",
            f"  escalations        {int(_value(page, 'elderwatch_tickets_escalations_total') or 0)}",
            f"  outcomes           {shown(outcomes)}",
            f"  valid-alert ratio  {f'{ratio:.2f}' if welfare_outcomes and ratio is not None else 'n/a (no welfare outcome yet)'}"
            f"  (confirmed_emergency + needed_help over welfare outcomes)",
            f"  sensitivity moved  {shown(moved)}"]


# -- the run --------------------------------------------------------------------------------------

def _simulate(workdir: Path, households: int, days: int):
    from elderwatch.simulator import simulate

    # Anomalies injected while the detectors warm up cannot be seen; when the data leaves a week
    # after the warm-up, put them all there.
    warmup = DETECTOR_WARMUP_DAYS if days >= DETECTOR_WARMUP_DAYS + 7 else days // 2
    return simulate(households=households, days=days, seed=7, out_dir=workdir / "sim", warmup_days=warmup)


#: Every demo user's password (the demo runs on 127.0.0.1 only; production refuses the demo's secret key).
DEMO_PASSWORD = "elderwatch-demo"
DEMO_SECRET_KEY = "elderwatch-demo-secret-key-not-for-production"


def _demo_users(households_csv: Path, users_file: Path) -> tuple[dict[str, str], list[str]]:
    """A users file for the demo's roster: every worker (staff), every supervisor (their communities), the
    duty and data-quality desks, one operator; all with :data:`DEMO_PASSWORD` and an API token (the
    simulated community worker calls the staff API with them). Returns (staff id -> token, sign-in lines)."""
    from elderwatch.roster import read_households_file
    from elderwatch.users import UserStore
    from schemas.users import User

    households, _ = read_households_file(households_csv)
    communities: dict[str, set[str]] = {}
    workers: list[str] = []
    for h in households:
        for person in (h.staff.primary_worker, h.staff.backup_worker):
            if person and person not in workers:
                workers.append(person)
        if h.staff.supervisor:
            communities.setdefault(h.staff.supervisor, set()).add(h.community)
    users = [User(user_id=w, role="staff") for w in [*workers, "duty-desk", "data-quality-desk"]]
    users += [User(user_id=s, role="supervisor", communities=tuple(sorted(c)), language="en")
              for s, c in communities.items()]
    users.append(User(user_id="operator", role="operator", language="en"))
    store = UserStore(users_file)
    tokens = {}
    for user in users:
        store.add(user, password=DEMO_PASSWORD, replace=True)
        tokens[user.user_id] = store.issue_token(user.user_id)
    first = households[0].staff.primary_worker
    lines = [f"{first} (staff, 中文)"]
    if communities:
        lines.append(f"{next(iter(communities))} (supervisor, English)")
    lines.append("operator (operator, English)")
    return tokens, lines


def _start_worker(workdir: Path, bootstrap: str, households_csv: Path) -> tuple[subprocess.Popen, int, str]:
    from elderwatch.localkafka import free_port

    port = free_port()
    app_id = f"elderwatch-demo-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELDERWATCH_APP_ID": app_id,
           "ELDERWATCH_USERS_FILE": str(workdir / "users.json"), "ELDERWATCH_SECRET_KEY": DEMO_SECRET_KEY,
           "ELDERWATCH_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "ELDERWATCH_TOPIC_PREFIX": f"{app_id}.", "ELDERWATCH_WEB_PORT": str(port),
           "ELDERWATCH_DATA_DIR": str(workdir / "worker"), "ELDERWATCH_HOUSEHOLDS_FILE": str(households_csv),
           "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "2",
           **{f"ELDERWATCH_ACK_TIMEOUT_{severity.upper()}_MIN": str(m) for severity, m in _DEMO_ACK_TIMEOUT_MIN.items()}}
    from elderwatch.localkafka import _die_with_parent_preexec

    # Its own session (Ctrl-C reaches the demo, which stops it in order), but killed with the demo if
    # the demo is killed outright: a worker left behind would keep a port and a consumer group.
    worker = subprocess.Popen([sys.executable, "-m", "elderwatch.cli", "worker"], env=env,
                              stdout=open(workdir / "worker.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True, preexec_fn=_die_with_parent_preexec(os.getpid()))
    return worker, port, f"{app_id}."


def _load_roster(households_csv: Path, bootstrap: str, prefix: str):
    from elderwatch.roster import read_households_file, send_households
    from streams.topics import HOUSEHOLDS_ROSTER, full_name

    households, bad = read_households_file(households_csv)
    if bad:  # the simulator writes valid rows; a bad one is a bug worth seeing
        raise RuntimeError(f"households.csv: {bad[0]}")
    send_households(households, bootstrap=bootstrap, topic=full_name(HOUSEHOLDS_ROSTER, prefix))
    return households


def _start_feed(messages, bootstrap: str, topic: str, pace: float | None,
                stop: threading.Event) -> tuple[threading.Thread, list[int]]:
    from elderwatch.feed import feed

    sent = [0]

    def pump() -> None:
        feed(messages, bootstrap=bootstrap, topic=topic, speed=pace, progress=False,
             should_stop=stop.is_set, on_sent=lambda n: sent.__setitem__(0, n))

    feeder = threading.Thread(target=pump, name="feed", daemon=True)
    feeder.start()
    return feeder, sent


class Status:
    """One tick of the live view: scrape, print new tickets and escalations, hand welfare tickets to
    the community worker, print the status line."""

    def __init__(self, port: int, watch: TicketWatch, community: CommunityWorker, clock: DataClock) -> None:
        self.port, self.watch, self.community, self.clock = port, watch, community, clock
        self.page, self.day = "", 0.0
        self.started = time.monotonic()

    def welfare_warnings(self) -> int:
        from dispatch.tickets import WELFARE_KINDS

        warned = _by_label(self.page, "elderwatch_detect_warnings_total", "kind") if self.page else {}
        return int(sum(v for kind, v in warned.items() if kind in WELFARE_KINDS))

    def tick(self, sent: int) -> None:
        from dispatch.tickets import WELFARE_KINDS

        self.page = _metrics_page(self.port) or self.page
        self.day = self.clock.day(read_counts(self.page, "detect").get("processed", 0))
        new, escalated = self.watch.poll()
        for summary in new:
            readable_as = self.watch.seen_as[summary["ticket_id"]]
            _say(_opened_line(summary, self.watch.client.ticket(summary["ticket_id"], readable_as)))
            if summary["kind"] in WELFARE_KINDS:
                self.community.offer(summary["ticket_id"], readable_as)
        for summary in escalated:
            _say(f"ticket escalated: {_label(summary)} {summary['severity']} -> {summary['assignee']} "
                 f"(not acknowledged in time)")
        _say(_line(time.monotonic() - self.started, read_counts(self.page), sent) + _loop_cells(self.page, self.day, self.watch))


def _verdict(balanced: bool, status: Status, households: int) -> int:
    """The loop half of the exit code (module docstring), with a line saying which case this was."""
    opened, warned = status.watch.welfare_opened(), status.welfare_warnings()
    watched = households * max(0.0, status.day - DETECTOR_WARMUP_DAYS)
    closed = status.community.closed
    if opened and closed:
        verdict, ok = f"{opened} welfare tickets opened, {len(closed)} taken through the API to closed", True
    elif opened:
        verdict, ok = f"{opened} welfare tickets opened but none reached closed through the API (see the api lines)", False
    elif warned:
        verdict, ok = f"{warned} welfare warnings raised but no ticket opened (see the worker log)", False
    elif watched < TICKETS_EXPECTED_AFTER:
        verdict, ok = (f"no welfare ticket: too little data past the detectors' {DETECTOR_WARMUP_DAYS}-day warm-up "
                       f"({watched:.0f} household-days; detection reached day {status.day:.1f}): run longer, or more "
                       f"--days or --households", True)
    else:
        verdict, ok = (f"no welfare warning in {watched:.0f} household-days past the warm-up (tickets are expected "
                       f"within {TICKETS_EXPECTED_AFTER}): detection is not working (see the worker log)", False)
    print(f"loop: {verdict} -> {'OK' if ok else 'NOT OK'}")
    return 0 if balanced and ok else 1


def run_demo(*, seconds: float, households: int, days: int, speed: str) -> int:
    from elderwatch.feed import canonical_messages, parse_speed, with_mess
    from elderwatch.localkafka import bootstrap_or_start
    from streams.topics import READINGS_RAW, TICKETS_FEEDBACK, ack_of, full_name

    pace = parse_speed(speed)  # a typo fails here, before anything is started
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="elderwatch-demo-"))
    print(f"elderwatch demo: working in {workdir}", flush=True)
    print("starting the local Kafka broker ...", flush=True)
    bootstrap, broker = bootstrap_or_start()
    worker = None
    community = None
    try:
        print(f"broker at {bootstrap}; simulating {households} households x {days} days ...", flush=True)
        summary = _simulate(workdir, households, days)
        print(f"  {summary.rows:,} readings, labelled anomalies: {summary.labels_by_kind}", flush=True)
        households_csv = summary.out_dir / "households.csv"
        tokens, sign_ins = _demo_users(households_csv, workdir / "users.json")

        worker, port, prefix = _start_worker(workdir, bootstrap, households_csv)
        print(f"starting the worker (metrics on http://127.0.0.1:{port}/metrics, log {workdir / 'worker.log'}) ...",
              flush=True)
        while _metrics_page(port) is None:
            if worker.poll() is not None or stop.is_set():
                print(f"worker did not start; see {workdir / 'worker.log'}", file=sys.stderr)
                return 1
            time.sleep(0.5)

        roster = _load_roster(households_csv, bootstrap, prefix)
        staff = watchers(roster)
        client = StaffClient(port, tokens)
        _wait_ready(port, worker, stop)  # the console and the API answer 503 until the tables are recovered
        _print_loop_intro(client, roster, staff, prefix, tokens)
        print(f"staff console: http://127.0.0.1:{port}/  sign in with password '{DEMO_PASSWORD}' as "
              + ", ".join(sign_ins) + f" (users: {workdir / 'users.json'}; `elderwatch users --file ... add` for more)",
              flush=True)

        community = CommunityWorker(client, limit=ACT_ON, bootstrap=bootstrap,
                                    feedback_acks=full_name(ack_of(TICKETS_FEEDBACK), prefix))
        community.start()
        # In time order, so the n-th reading detection processed tells the data day it reached.
        readings = sorted(canonical_messages(summary.out_dir / "readings.csv"), key=lambda m: m.ts)
        clock = DataClock.of(readings)
        messages = list(with_mess(readings, fraction=0.03))  # re-sends and garbage keep their source's time
        feeder, sent = _start_feed(messages, bootstrap, full_name(READINGS_RAW, prefix), pace, stop)
        first_tickets = clock.wall_seconds_to(DETECTOR_WARMUP_DAYS, pace)
        print("feeding readings (3% duplicates and garbage mixed in, as real feeds have); the detectors warm up on "
              f"{DETECTOR_WARMUP_DAYS} days of data, so tickets start after data day {DETECTOR_WARMUP_DAYS}"
              + (f" (~{first_tickets:.0f} s at {speed}, if the worker keeps up)" if first_tickets else "") + " ...\n",
              flush=True)

        status = Status(port, TicketWatch(client, staff), community, clock)
        deadline = status.started + seconds if seconds > 0 else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            status.tick(sent[0])
            stop.wait(_STATUS_EVERY_S)
        stop.set()
        feeder.join(timeout=30)  # the feed flushes what it sent before returning
        _say("feed stopped; letting the worker drain (ingest, detection, and the community worker's ticket) ...")
        balanced = _drain(status, community, sent[0])
        print("\n" + _identity_line(read_counts(status.page), sent[0], balanced))
        print("\n".join(_loop_summary(status.page)))
        return _verdict(balanced, status, len(roster))
    finally:
        if community is not None:
            community.quit.set()
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        if broker is not None:
            broker.stop()
        print("demo stopped: worker and broker shut down.", flush=True)


def _drain(status: Status, community: CommunityWorker, sent: int) -> bool:
    """Keep the live view going until ingest and detection have caught up with what was sent and the
    community worker has finished the ticket in hand (at most :data:`_DRAIN_S`); True if the ingest
    books balance."""
    deadline = time.monotonic() + _DRAIN_S
    while True:
        status.tick(sent)
        counts = read_counts(status.page)
        ingest_done = counts.get("received", 0) >= sent and _in_flight(counts) == 0
        # Caught up: every reading through detection, and its warnings on the desks as tickets.
        caught_up = (ingest_done and _detect_behind(status.page) == 0
                     and (status.watch.welfare_opened() > 0 or status.welfare_warnings() == 0))
        if caught_up and community.idle() or time.monotonic() > deadline:
            return ingest_done
        time.sleep(_STATUS_EVERY_S)
