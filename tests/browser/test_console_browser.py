"""The staff console in a real browser (Chromium, headless) against a real worker on the real broker.

Starts: one ``elderwatch worker`` for the module (users file, clock-offset file, deadline timer every
second, household zone Asia/Shanghai) and one Chromium. Through Kafka, as in production: the roster on
``households.roster``, nine days of two households' readings on ``readings.raw`` (so the detect stage
holds their recent usage for the chart), one unreadable message (a dead letter for the operator), and
warnings on ``anomalies``. Then, as people would:

1. a community worker signs in (Chinese), a new ticket appears on "my tickets" without a reload;
2. they acknowledge, handle and give feedback; the ticket closes once detection has learned;
3. a worker of another community gets 403 on that ticket; a POST without the CSRF token, or from
   another site, is refused;
4. English pages, the supervisor's and the operator's.

Screenshots (phone 390x844 and desktop) go to ``test-artifacts/console/``; with
``ELDERWATCH_DOCS_SCREENSHOTS=1`` (``python docs/screenshots.py``) the README's go to ``docs/``.
Chromium missing is a failure, never a skip (``make system-packages`` installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from elderwatch.users import UserStore
from schemas.users import User

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
DOCS = REPO / "docs"
CHROMIUM = os.environ.get("ELDERWATCH_TEST_CHROMIUM", "/usr/bin/chromium")
ZONE = ZoneInfo("Asia/Shanghai")
PASSWORD = "browser-test-password"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}

SILENT, FLOWING, RESTLESS, SOUTH = "hh-000001", "hh-000003", "hh-000004", "hh-000002"
CHINESE_READERS = {"w-north-1", "w-south-1"}


def _integration_helpers():
    """tests/integration/conftest.py (WorkerProcess, produce), loaded under its own name."""
    path = REPO / "tests" / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("elderwatch_integration_helpers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


helpers = _integration_helpers()


def roster(household_id: str, community: str, meters: tuple = (), **staff) -> tuple[bytes, bytes]:
    return household_id.encode(), json.dumps({"household_id": household_id, "community": community,
                                              "timezone": "Asia/Shanghai", "staff": staff,
                                              "meters": list(meters)}).encode()


METERS = ({"utility_id": "grid-north", "meter_id": "EM-0001", "kind": "electricity"},
          {"utility_id": "aqua-north", "meter_id": "WM-0001", "kind": "water"})


def readings(household_id: str, end: datetime, *, days: int = 9, story: str, seed: int) -> list[tuple[bytes, bytes]]:
    """Quarter-hourly water (L) and electricity (kWh) of an ordinary home, ending with ``story``:
    ``silent`` (nothing switched, no water for the last 5 hours) or ``flowing`` (a tap running 3 hours)."""
    rng = random.Random(seed)
    out = []
    steps = days * 96
    for i in range(steps, 0, -1):
        ts = end - timedelta(minutes=15 * (i - 1))
        local = ts.astimezone(ZONE)
        awake = 7 <= local.hour < 22
        water = round(rng.uniform(0, 12), 1) if awake and rng.random() < 0.45 else 0.0
        power = 0.04 + (0.02 if i % 4 == 0 else 0.0)  # the fridge
        if awake and rng.random() < 0.5:
            power += round(rng.uniform(0.05, 0.4), 3)
        if local.hour in (7, 12, 18) and rng.random() < 0.7:
            power += 0.5  # cooking
        last_hours = (i - 1) / 4
        if story == "silent" and last_hours < 5:
            water, power = 0.0, 0.04 + (0.02 if i % 4 == 0 else 0.0)
        if story == "flowing" and last_hours < 3:
            water = 4.0
        for meter, value in (("water", water), ("electricity", round(power, 3))):
            out.append((household_id.encode(), json.dumps({"household_id": household_id, "meter": meter,
                                                           "ts": ts.isoformat(), "value": value}).encode()))
    return out


def warning(household_id: str, kind: str, severity: str, start: datetime, detected: datetime, summary: str,
            meter: str | None = None) -> tuple[bytes, bytes]:
    return household_id.encode(), json.dumps({
        "warning_id": f"{household_id}/{kind}/{start.isoformat()}", "household_id": household_id, "kind": kind,
        "meter": meter, "episode_start": start.isoformat(), "detected_at": detected.isoformat(), "score": 1.4,
        "severity": severity, "evidence": {"summary": summary}}).encode()


class Stage:
    """The worker, its users and the story's times."""

    def __init__(self, bootstrap: str, worker, end: datetime) -> None:
        self.bootstrap, self.worker, self.end = bootstrap, worker, end
        self.base = f"http://127.0.0.1:{worker.port}"

    def produce(self, topic: str, messages) -> None:
        helpers.produce(self.bootstrap, self.worker.topic(topic), messages)

    def ticket_id(self, household_id: str, kind: str, start: datetime) -> str:
        return f"{household_id}/{kind}/{start.isoformat()}"

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base}/tickets/{quote(ticket_id, safe='')}"


@pytest.fixture(scope="module")
def stage(kafka_bootstrap, tmp_path_factory):
    prefix = f"b{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path_factory.mktemp(prefix)
    users = UserStore(data_dir / "users.json")
    for user in [User(user_id="w-north-1", role="staff", language="zh"),
                 User(user_id="w-north-2", role="staff", language="en"),
                 User(user_id="s-north", role="supervisor", communities=("north",), language="en"),
                 User(user_id="w-south-1", role="staff", language="zh"),
                 User(user_id="ops-1", role="operator", language="en")]:
        users.add(user, password=PASSWORD)
    clock = data_dir / "clock-offset"
    clock.write_text("0")
    worker = helpers.WorkerProcess(kafka_bootstrap, prefix, data_dir, partitions=2, extra_env={
        "ELDERWATCH_USERS_FILE": str(users.path), "ELDERWATCH_SECRET_KEY": "browser-test-" + "k" * 32,
        "ELDERWATCH_CLOCK_OFFSET_FILE": str(clock), "ELDERWATCH_TICKET_TIMER_INTERVAL_S": "1",
        "ELDERWATCH_DEFAULT_TIMEZONE": "Asia/Shanghai"}).start()
    now = datetime.now(timezone.utc)
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    s = Stage(kafka_bootstrap, worker, end)
    chain = {"primary_worker": "w-north-1", "backup_worker": "w-north-2", "supervisor": "s-north"}
    s.produce("households.roster", [roster(h, "north", METERS if h == SILENT else (), **chain)
                                    for h in (SILENT, FLOWING, RESTLESS)]
              + [roster(SOUTH, "south", primary_worker="w-south-1")])
    s.produce("readings.raw", readings(SILENT, end, story="silent", seed=1) + readings(FLOWING, end, story="flowing",
                                                                                       seed=2)
              + [(None, b"this is not a meter reading at all")])
    yield s
    worker.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: the browser tests drive Debian's chromium through Playwright "
                    "(`make system-packages` installs it: apt-get install chromium fonts-wqy-microhei; or set "
                    "ELDERWATCH_TEST_CHROMIUM)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def shoot(page, name: str, docs_name: str | None = None, full_page: bool = True) -> None:
    """A screenshot in test-artifacts/; with ELDERWATCH_DOCS_SCREENSHOTS=1 also the README's in docs/ (phone
    shots at 0.6 scale: small files, still sharp)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs_name and os.environ.get("ELDERWATCH_DOCS_SCREENSHOTS") == "1":
        from PIL import Image

        image = Image.open(path)
        if image.width < 1000:  # a phone at device scale 2
            image = image.resize((round(image.width * 0.6), round(image.height * 0.6)), Image.LANCZOS)
        image = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        image.save(DOCS / docs_name, optimize=True)


def sign_in(browser, stage: Stage, user_id: str, device: dict = PHONE):
    """A new browser (its own cookies) signed in as ``user_id``, its locale the user's language."""
    context = browser.new_context(**device, locale="zh-CN" if user_id in CHINESE_READERS else "en-GB",
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.goto(f"{stage.base}/signin")
    page.fill("input[name=user_id]", user_id)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/signin'] button")
    page.wait_for_load_state()
    return context, page


def wait_for_text(page, text: str, timeout: float = 30.0, reload: bool = True) -> None:
    """Reload until ``text`` is on the page (for changes made by the pipeline, not by this page)."""
    deadline = time.monotonic() + timeout
    while text not in page.content():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on {page.url} after {timeout:.0f} s")
        time.sleep(0.5)
        if reload:
            page.reload()


@pytest.fixture(scope="module")
def tickets(stage: Stage):
    """The warnings' start times by household (produced by the first test, while the list is open)."""
    return {SILENT: stage.end - timedelta(hours=5), FLOWING: stage.end - timedelta(hours=3),
            RESTLESS: stage.end - timedelta(days=2, hours=7)}


def _local(moment: datetime) -> str:
    return moment.astimezone(ZONE).strftime("%H:%M on %a %d %b")


def test_a_new_ticket_appears_on_my_tickets_without_a_reload(stage, browser, tickets):
    context, page = sign_in(browser, stage, "w-north-1")
    assert page.url.rstrip("/") == stage.base, (page.url, page.content()[:3000], stage.worker.log_tail(40))
    assert page.locator("h1").inner_text() == "我的工单"  # w-north-1 reads Chinese
    page.wait_for_selector(".tickets .empty")
    page.evaluate("window.__stillTheSamePage = true")

    start = tickets[SILENT]
    stage.produce("anomalies", [warning(
        SILENT, "inactivity", "high", start, stage.end,
        f"no water used and no appliance switched on since {_local(start)}, 5.0 h; water is usually used in about "
        f"11 of the 20 quarter-hours since then")])
    ticket_id = stage.ticket_id(SILENT, "inactivity", start)
    page.wait_for_selector(f'li[data-ticket-id="{ticket_id}"]', timeout=30_000)
    assert page.evaluate("window.__stillTheSamePage") is True  # the list updated itself: no reload
    card = page.locator(f'li[data-ticket-id="{ticket_id}"]')
    assert "没有活动迹象" in card.inner_text() and "紧急：立即查看" in card.inner_text()
    assert "no water used and no appliance switched on" in card.inner_text()

    # two more, less urgent: sorted by severity
    stage.produce("anomalies", [
        warning(FLOWING, "continuous_flow", "medium", tickets[FLOWING], stage.end,
                f"water has run in every interval for 3 h since {_local(tickets[FLOWING])} (about 16 L an hour); "
                "the longest steady run this home normally has is 1 h", meter="water"),
        warning(RESTLESS, "night_activity", "low", tickets[RESTLESS], stage.end,
                "up in the night on 2 of the last 3 nights (water and lights between 01:00 and 03:30); "
                "this home is usually quiet from 22:30 to 06:30")])
    expect(page.locator("li[data-ticket-id]")).to_have_count(3, timeout=30_000)
    expect(page.locator('li[data-state="open"]')).to_have_count(0, timeout=30_000)  # each sent to its worker
    severities = page.eval_on_selector_all("li[data-ticket-id]", "els => els.map(e => e.className)")
    assert [c.split()[1] for c in severities] == ["sev-high", "sev-medium", "sev-low"]
    shoot(page, "list-zh-phone", "console-list-zh.png")
    context.close()


def test_acknowledge_handle_feedback_and_the_ticket_closes(stage, browser, tickets):
    context, page = sign_in(browser, stage, "w-north-1")
    ticket_id = stage.ticket_id(SILENT, "inactivity", tickets[SILENT])
    page.click(f'li[data-ticket-id="{ticket_id}"] a')
    page.wait_for_selector("button[data-action=acknowledge]")
    assert "没有用水，也没有开关电器" in page.content()  # why, in Chinese; the evidence sentence below it
    assert page.locator("svg.usage-water rect.bar").count() > 0, "no water chart: recent usage did not arrive"
    assert page.locator("svg.usage-electricity").count() == 1
    meters = page.locator("section.meters").inner_text()  # the roster's meters, each with its last reading
    assert "EM-0001" in meters and "WM-0001" in meters and stage.end.astimezone(ZONE).strftime("%H:%M") in meters
    shoot(page, "ticket-zh-phone", "console-ticket-zh.png")

    page.click("button[data-action=acknowledge]")  # two taps: the ticket, then this
    page.wait_for_selector(".flash-ok")
    assert "已接单" in page.locator(".flash").inner_text()
    assert page.locator(".state").first.inner_text() == "已接单"

    page.fill("textarea[name=notes]", "上门查看：老人在花园里，一切安好")
    page.click("button[data-action=handle]")
    page.wait_for_selector("button[data-action=feedback]")
    assert page.locator(".state").first.inner_text() == "已处置，待记录结果"

    page.check("input[name=outcome][value=false_alarm]")
    page.click("button[data-action=feedback]")
    page.wait_for_selector(".flash-ok")
    # the detect stage acknowledges the feedback and closes the ticket (once it has learned)
    wait_for_text(page, '<span class="state" data-state="closed">')
    history = page.locator(".history").inner_text()
    for step in ("工单已创建", "已派给", "接单人", "处置人", "结果记录人", "已关闭（检测已根据结果学习）"):
        assert step in history, history
    assert "上门查看：老人在花园里，一切安好" in history
    shoot(page, "ticket-zh-closed-phone")
    context.close()


def test_another_communitys_worker_gets_403_and_posts_need_the_csrf_token(stage, browser, tickets):
    context, page = sign_in(browser, stage, "w-south-1")
    flowing = stage.ticket_id(FLOWING, "continuous_flow", tickets[FLOWING])
    response = page.goto(stage.ticket_url(flowing))
    assert response.status == 403
    assert "无权查看" in page.content() and "water has run" not in page.content()
    assert page.goto(f"{stage.base}/households/{FLOWING}").status == 403
    shoot(page, "forbidden-zh-phone")
    page.goto(stage.base)
    assert "现在没有需要您处理的工单" in page.content()  # nothing of community north on the list

    # a POST without the form's token is refused, and so is one with it from another site
    refused = context.request.post(f"{stage.ticket_url(flowing)}/acknowledge", form={"idem": "k-1"},
                                   max_redirects=0)
    assert refused.status == 403
    context.close()

    context, page = sign_in(browser, stage, "w-north-1")
    page.goto(stage.ticket_url(flowing))
    csrf = page.locator("form[action$='/acknowledge'] input[name=csrf]").get_attribute("value")
    refused = context.request.post(f"{stage.ticket_url(flowing)}/acknowledge", form={"idem": "k-2"}, max_redirects=0)
    assert refused.status == 403
    refused = context.request.post(f"{stage.ticket_url(flowing)}/acknowledge", form={"idem": "k-3", "csrf": csrf},
                                   headers={"Origin": "https://elsewhere.example"}, max_redirects=0)
    assert refused.status == 403
    page.reload()
    assert page.locator(".state").first.inner_text() == "已派单，等待接单"  # nothing was done
    context.close()


def test_english_pages_on_a_desktop(stage, browser, tickets):
    context, page = sign_in(browser, stage, "w-north-2", DESKTOP)
    assert page.locator("h1").inner_text() == "My tickets"
    expect(page.locator("li[data-ticket-id]")).to_have_count(2, timeout=30_000)
    shoot(page, "list-en-desktop", "console-list-en.png")
    flowing = stage.ticket_id(FLOWING, "continuous_flow", tickets[FLOWING])
    page.click(f'li[data-ticket-id="{flowing}"] a')
    page.wait_for_selector("svg.usage-water")
    assert "Water running without a break" in page.content()
    shoot(page, "ticket-en-desktop", "console-ticket-en.png")
    page.set_viewport_size(PHONE["viewport"])
    shoot(page, "ticket-en-phone")

    # the language switch, for this session
    page.click("form[action='/language'] button")
    page.wait_for_load_state()
    assert "持续用水不停" in page.content()
    context.close()


def test_supervisor_and_operator_pages(stage, browser):
    context, page = sign_in(browser, stage, "s-north", DESKTOP)
    page.goto(f"{stage.base}/supervisor")
    assert page.locator("h1").inner_text() == "Across your communities"
    text = page.locator("main").inner_text()
    assert "0%" in text and "(0 of 1 outcomes)" in text  # the one outcome so far was a false alarm
    assert page.locator("svg.daily-chart rect.bar").count() >= 1
    shoot(page, "supervisor-en-desktop")
    assert page.goto(f"{stage.base}/operator").status == 403
    context.close()

    context, page = sign_in(browser, stage, "ops-1", DESKTOP)
    assert page.url.endswith("/operator")
    wait_for_text(page, "<code>not_json</code>", timeout=20)
    text = page.locator("main").inner_text()
    assert "this is not a meter reading" not in page.content()  # never the original bytes
    assert "\nreadings\trunning" in text and "OK" in text  # the agents table: the readings loop (ingest, detect)
    assert stage.worker.prefix in text  # the consumer group's lag
    shoot(page, "operator-en-desktop")
    assert page.goto(f"{stage.base}/").url.endswith("/operator")
    context.close()
