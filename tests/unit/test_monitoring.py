"""The service's own monitoring (``ops/``): Prometheus alert rules, their ``promtool`` unit tests, the Grafana
dashboard, and the metrics behind them.

``promtool`` (Debian's ``prometheus`` package, installed by ``make system-packages``) is required: without
it these tests fail, they never skip. Every metric name a rule or a dashboard query uses must be one a worker
really exports: the names come from the registry of an app built by ``streams.app.create_app`` (in a
subprocess, so faust's app stays out of this process), not from a list kept here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from functools import lru_cache
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from streams.metrics import ConsumerLagMetrics, IngestMetrics, identity_gaps  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "ops" / "prometheus"
RULES, RULES_TEST, PROMETHEUS_CONFIG = PROMETHEUS / "rules.yml", PROMETHEUS / "rules_test.yml", PROMETHEUS / "prometheus.yml"
GRAFANA = REPO / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "elderwatch.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"

#: Prometheus's own series a rule or panel may use beside the worker's
PROMETHEUS_SERIES = {"up"}
#: labels Prometheus adds to every scraped series, and the histogram bucket label
TARGET_LABELS = {"instance", "job", "le"}


def promtool(*args: str, cwd: Path = PROMETHEUS, stdin: str | None = None) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make system-packages` installs it (Debian's prometheus package)")
    return subprocess.run([path, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- what the worker exports

_EXPORTED = r"""
import json
from prometheus_client import generate_latest
from elderwatch.settings import Settings
from streams.app import create_app

registry = create_app(Settings(kafka_bootstrap_servers="127.0.0.1:9")).elderwatch_metrics.registry
suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
out = {}
for collector in list(registry._collector_to_names):
    labels = list(getattr(collector, "_labelnames", ()))
    for family in collector.collect():
        for suffix in suffixes.get(family.type, ("",)):
            out[family.name + suffix] = sorted(set(labels) | {k for s in family.samples for k in s.labels})
print(json.dumps({"names": out, "page": generate_latest(registry).decode()}))
"""


@lru_cache(maxsize=1)
def _worker_metrics() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERWATCH_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run([sys.executable, "-c", _EXPORTED], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def exported() -> dict[str, set[str]]:
    """{sample name: its label names} of a worker's /metrics page, from the app the worker runs."""
    return {name: set(labels) for name, labels in _worker_metrics()["names"].items()}


def test_the_worker_metrics_page_passes_promtool_lint():
    page = _worker_metrics()["page"]
    assert "elderwatch_consumer_lag{" in page and "elderwatch_ready " in page
    result = promtool("check", "metrics", stdin=page)
    assert result.returncode == 0, result.stdout + result.stderr


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
             "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def _strip(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not functions, keywords, labels or numbers).

    >>> sorted(metric_names('sum by (topic) (rate(a_total{x!="y"}[5m])) / on() group_left b > 1e3 and up'))
    ['a_total', 'b', 'up']
    """
    text = _GROUPING.sub(" ", _strip(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)   # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group()
        if word.lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Label names an expression groups by or matches on.

    >>> sorted(label_names('sum by (le, phase) (rate(x{utility!="unknown", job="a"}[5m]))'))
    ['job', 'le', 'phase', 'utility']
    """
    text = _strip(expr)
    names = {name.strip() for _, inside in _GROUPING.findall(text) for name in inside.split(",") if name.strip()}
    for inside in re.findall(r"\{([^}]*)\}", text):
        names |= {m.group(1) for m in re.finditer(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", inside)}
    return names


def unknown_names(expr: str) -> list[str]:
    """Series and label names of ``expr`` that no worker exports (Prometheus's own ``up`` and target labels allowed)."""
    series = exported()
    problems = [f"series {name}" for name in sorted(metric_names(expr)) if name not in set(series) | PROMETHEUS_SERIES]
    labels = set().union(*(series.get(name, set()) for name in metric_names(expr))) | TARGET_LABELS
    problems += [f"label {name}" for name in sorted(label_names(expr) - labels)]
    return problems


# --------------------------------------------------------------------------- alert rules


def _rules() -> list[dict]:
    with RULES.open(encoding="utf-8") as fh:
        return [rule for group in yaml.safe_load(fh)["groups"] for rule in group["rules"]]


def _alerts() -> list[str]:
    return [rule["alert"] for rule in _rules() if "alert" in rule]


def test_promtool_is_installed():
    result = promtool("--version")
    assert result.returncode == 0 and "promtool" in (result.stdout + result.stderr)


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails_the_rule_tests(tmp_path):
    # the rule tests can fail: an expected summary changed by one character is reported
    for path in (RULES, RULES_TEST):
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / RULES_TEST.name
    text = broken.read_text(encoding="utf-8")
    assert "is 3000 messages and growing" in text
    broken.write_text(text.replace("is 3000 messages and growing", "is 3001 messages and growing"), encoding="utf-8")
    result = promtool("test", "rules", broken.name, cwd=tmp_path)
    assert result.returncode != 0 and "3001" in result.stdout + result.stderr


def test_prometheus_config_scrapes_the_worker_and_loads_the_rules():
    result = promtool("check", "config", PROMETHEUS_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == [RULES.name]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "elderwatch"  # ElderwatchWorkerDown selects up{job="elderwatch"}
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_has_a_case_that_fires_and_one_that_must_not():
    with RULES_TEST.open(encoding="utf-8") as fh:
        tests = yaml.safe_load(fh)
    assert tests["rule_files"] == [RULES.name]
    fires, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert len(alerts) == len(_alerts()), "two rules with one alert name"
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_rule_has_a_severity_a_summary_and_the_runbook():
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"] == "README.md#alerts", rule["alert"]


def test_the_alerts_the_issue_asks_for_are_there():
    used = {rule["alert"]: metric_names(rule["expr"]) for rule in _rules()}
    for metric in ("elderwatch_consumer_lag", "elderwatch_ingest_dead_lettered_total",
                   "elderwatch_notify_oldest_pending_seconds", "elderwatch_ingest_last_reading_timestamp_seconds",
                   "elderwatch_ready", "elderwatch_agent_crashes_total"):
        assert any(metric in names for names in used.values()), metric


def test_rules_use_only_metrics_and_labels_the_worker_exports():
    problems = {rule["alert"]: unknown_names(rule["expr"]) for rule in _rules()}
    assert {alert: p for alert, p in problems.items() if p} == {}


def test_readme_explains_every_alert():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n### Alerts"):]
    section = section[:section.index("\n## ", 1)]
    missing = [alert for alert in _alerts() if f"`{alert}`" not in section]
    assert missing == []


# --------------------------------------------------------------------------- the dashboard


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels() -> list[dict]:
    out = []
    for panel in _dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels inside a collapsed row
    return out


def _queries() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) of every target, with Grafana's interval variables given a value."""
    out = []
    for panel in _panels():
        for target in panel.get("targets", []):
            expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", target["expr"])
            out.append((f"{panel['title']} / {target['refId']}", expr))
    return out


def test_dashboard_is_a_grafana_dashboard_with_unique_panel_ids():
    dashboard = _dashboard()
    assert dashboard["uid"] == "elderwatch" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids)), sorted(ids)
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_dashboard_panels_fit_the_grid_without_overlapping():
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels():
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_has_the_provisioned_datasource_and_queries():
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert [ds["type"] for ds in provisioned] == ["prometheus"]
    uid = provisioned[0]["uid"]
    for panel in _panels():
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no queries"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_dashboard_query_parses(tmp_path):
    # promtool parses each query as a recording rule's expression
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(_queries())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_query_that_does_not_parse_is_caught(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "dashboard:bad", "expr": "sum by (topic (elderwatch_consumer_lag)"}]}]}), encoding="utf-8")
    assert promtool("check", "rules", str(path), cwd=tmp_path).returncode != 0


def test_dashboard_uses_only_metrics_and_labels_the_worker_exports():
    problems = {where: unknown_names(expr) for where, expr in _queries()}
    assert {where: p for where, p in problems.items() if p} == {}


def test_dashboard_shows_what_the_issue_asks_for():
    used = set().union(*(metric_names(expr) for _, expr in _queries()))
    for metric in ("elderwatch_ingest_received_total", "elderwatch_ingest_valid_total",
                   "elderwatch_ingest_dead_lettered_total", "elderwatch_consumer_lag", "elderwatch_detect_seconds_bucket",
                   "elderwatch_detect_warnings_total", "elderwatch_tickets_opened_total",
                   "elderwatch_tickets_escalations_total", "elderwatch_notify_oldest_pending_seconds",
                   "elderwatch_notify_parked_total", "elderwatch_detect_state_bytes_bucket", "elderwatch_ready"):
        assert metric in used, metric


def test_the_name_check_catches_a_misspelt_metric_or_label():
    assert unknown_names("sum(rate(elderwatch_ingest_recieved_total[5m]))") == ["series elderwatch_ingest_recieved_total"]
    assert unknown_names("sum by (kinds) (elderwatch_detect_warnings_total)") == ["label kinds"]
    assert unknown_names('sum by (kind) (elderwatch_detect_warnings_total{job="elderwatch"}) + up') == []


# --------------------------------------------------------------------------- the metrics behind the rules

TP = namedtuple("TP", "topic partition")


class _FakeConsumer:
    def __init__(self, ends: dict, committed: dict | None) -> None:
        self.ends = ends
        if committed is not None:  # faust's consumer keeps it (private); without it, the monitor's is read
            self._committed_offset = committed

    def assignment(self) -> set:
        return set(self.ends)

    def highwater(self, tp):
        if tp not in self.ends:
            raise AssertionError("Partition is not assigned")  # what aiokafka does
        return self.ends[tp]


class _FakeApp:
    def __init__(self, consumer, monitor_committed=None) -> None:
        self.consumer = consumer
        self.monitor = namedtuple("Monitor", "tp_committed_offsets")(monitor_committed or {})


def _lag(metrics: ConsumerLagMetrics) -> dict[str, float]:
    return {s.labels["topic"]: s.value for s in metrics.lag.collect()[0].samples}


def test_consumer_lag_is_log_end_minus_committed_per_topic():
    from prometheus_client import CollectorRegistry

    metrics = ConsumerLagMetrics(CollectorRegistry(), ["readings.raw", "readings.validated", "anomalies"])
    assert _lag(metrics) == {"readings.raw": 0, "readings.validated": 0, "anomalies": 0}  # exported from the start
    ends = {TP("readings.raw", 0): 100, TP("readings.raw", 1): 40, TP("readings.validated", 2): 7,
            TP("readings.validated", 3): None,  # not fetched since its assignment
            TP("elderwatch-detect-household-state-changelog", 0): 5000}  # a table's changelog: not a source topic
    consumer = _FakeConsumer(ends, {TP("readings.raw", 0): 90, TP("readings.raw", 1): 40,
                                    TP("readings.validated", 2): None})  # None: committed 0, or never
    stale = {TP("readings.raw", 0): 10, TP("readings.validated", 2): 3}  # an earlier assignment's commits
    metrics.refresh(_FakeApp(consumer, monitor_committed=stale))
    assert _lag(metrics) == {"readings.raw": 10, "readings.validated": 7, "anomalies": 0}
    metrics.refresh(_FakeApp(_FakeConsumer(ends, None), monitor_committed=stale))
    assert _lag(metrics) == {"readings.raw": 130, "readings.validated": 4, "anomalies": 0}


def test_consumer_lag_keeps_its_values_when_the_consumer_cannot_tell():
    from prometheus_client import CollectorRegistry

    metrics = ConsumerLagMetrics(CollectorRegistry(), ["readings.raw"])
    metrics.refresh(_FakeApp(_FakeConsumer({TP("readings.raw", 0): 12}, {})))
    assert _lag(metrics) == {"readings.raw": 12}

    class NotStarted:
        @property
        def consumer(self):
            raise RuntimeError("consumer not started")

    metrics.refresh(NotStarted())
    assert _lag(metrics) == {"readings.raw": 12}


def test_the_lag_topics_are_the_agents_source_topics():
    from prometheus_client import CollectorRegistry

    class Agent:
        def __init__(self, *topics):
            self.channel = namedtuple("Topic", "topics")(topics)

    app = namedtuple("App", "agents")({"a": Agent("readings.raw"), "b": Agent("tickets.warning", "households.roster"),
                                       "c": Agent("households.roster")})
    metrics = ConsumerLagMetrics.of_app(app, CollectorRegistry())
    assert metrics.topics == ["households.roster", "readings.raw", "tickets.warning"]


def test_a_utility_on_the_roster_gets_a_last_reading_series_once_known():
    import time as clock

    from schemas.households import Household
    from schemas.readings import MeterReading
    from streams.ingest import Enrolment

    metrics = IngestMetrics()
    enrolment = Enrolment([Household(household_id="hh-1", community="c", staff={"primary_worker": "w-1"},
                                     meters="aqua:WM-7:water;grid:E-1:electricity")])
    before = clock.time()
    metrics.reading_in(MeterReading(household_id="hh-1", meter="water", ts="2026-03-01T07:15:00Z", value=2), enrolment)
    first = {s.labels["utility"]: s.value for s in metrics.last_reading.collect()[0].samples}
    assert set(first) == {"aqua"} and first["aqua"] >= before
    metrics.know_utilities(enrolment.utilities())
    second = {s.labels["utility"]: s.value for s in metrics.last_reading.collect()[0].samples}
    assert set(second) == {"aqua", "grid"} and second["aqua"] == first["aqua"]  # a known one is not moved
    # a household nobody enrolled, and no enrolment at all: "unknown", never the message's own utility_id
    metrics.reading_in(MeterReading(household_id="hh-9", utility_id="made-up", meter="water",
                                    ts="2026-03-01T07:15:00Z", value=2), enrolment)
    metrics.reading_in(MeterReading(household_id="hh-1", meter="water", ts="2026-03-01T07:15:00Z", value=2))
    assert {s.labels["utility"] for s in metrics.last_reading.collect()[0].samples} == {"aqua", "grid", "unknown"}


def test_identity_gaps_name_the_terms_that_do_not_add_up():
    page = "\n".join([
        "elderwatch_ingest_received_total 10.0", "elderwatch_ingest_valid_total 6.0",
        "elderwatch_ingest_duplicates_total 1.0", 'elderwatch_ingest_dead_lettered_total{reason="not_json"} 2.0',
        "elderwatch_ingest_raw_redelivered_total 1.0", "elderwatch_ingest_emitted_total 5.0",
        'elderwatch_ingest_register_baselines_total{reason="first"} 1.0',
        "elderwatch_detect_received_total 6.0", "elderwatch_detect_processed_total 5.0",
        'elderwatch_detect_dead_lettered_total{reason="not_json"} 1.0'])
    assert identity_gaps(page) == []
    assert identity_gaps(page.replace("elderwatch_detect_received_total 6.0", "elderwatch_detect_received_total 7.0")) \
        == ["detect: received 7 != processed 5 + redelivered 0 + dead_lettered 1 + failed 0"]
    assert identity_gaps(page.replace("elderwatch_ingest_received_total 10.0", "elderwatch_ingest_received_total 11.0")) \
        == ["ingest: received 11 != valid 6 + duplicates 1 + dead_lettered 2 + raw_redelivered 1"]
