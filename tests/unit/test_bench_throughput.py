"""bench/bench_throughput.py's pure parts: when the pipeline is through, and the table it writes."""

from __future__ import annotations

from bench.bench_throughput import pipeline_done, report

PAGE = """elderwatch_ingest_received_total 10.0
elderwatch_ingest_valid_total 8.0
elderwatch_ingest_duplicates_total 1.0
elderwatch_ingest_dead_lettered_total{reason="not_json"} 1.0
elderwatch_ingest_emitted_total 8.0
elderwatch_detect_received_total %s
"""


def test_the_pipeline_is_through_when_detection_has_taken_what_ingest_emitted():
    assert pipeline_done(PAGE % "7.0") == (10.0, False)
    assert pipeline_done(PAGE % "8.0") == (10.0, True)


def _row(rate: float) -> dict:
    return {"messages": 1000, "seconds": 1000 / rate, "rate": rate, "worker_cpu_share": 0.9, "rss_mib": 100.0,
            "counts": {"ingest": {"received": 1000, "valid": 980}, "detect": {"received": 980, "processed": 980},
                       "tickets": {}}}


def test_the_table_puts_each_rate_beside_the_ceiling_of_the_same_run():
    text = report({"command": "python -m bench.bench_throughput", "machine": "2 CPUs", "revision": "abc",
                   "partitions": 4, "messages": 1000, "households": 10, "days": 1, "order": "time",
                   "rows": {"passthrough-send_soon": _row(4000), "passthrough-take": _row(4400),
                            "worker-0": {**_row(1000), "label": "elderwatch worker", "env": {}},
                            "worker-1": {**_row(1100), "label": "no linger", "env": {"ELDERWATCH_PRODUCER_LINGER_MS": "0"}}}})
    assert "| bare Faust pass-through, `send_soon` per message (the ceiling) | 1,000 | 0.2 | 4,000 | 100% |" in text
    assert "| 4,400 | 110% |" in text and "| elderwatch worker | 1,000 | 1.0 | 1,000 | 25% |" in text
    assert "0.90 ms of CPU" in text  # CPU per reading, which a shared machine disturbs less than the rate
    assert "| no linger (`ELDERWATCH_PRODUCER_LINGER_MS=0`) | 1,000 | 0.9 | 1,100 | 28% |" in text


def test_the_aiokafka_row_sits_under_the_faust_ones_and_the_table_has_no_gap():
    rows = {"passthrough-send_soon": _row(4000), "passthrough-take": _row(4400),
            "worker-0": {**_row(1000), "label": "elderwatch worker", "env": {}}}
    header = {"command": "c", "machine": "m", "revision": "r", "partitions": 4, "messages": 1000, "households": 10,
              "days": 1, "order": "time"}
    without = report({**header, "rows": rows})
    with_it = report({**header, "rows": {**rows, "passthrough-aiokafka": _row(80000)}})
    for text in (without, with_it):
        table = text[text.index("| pipeline |"):].split("\n\n")[0].splitlines()
        assert all(line.startswith("|") for line in table) and len(table) == 2 + len(rows) + (text is with_it)
    assert "aiokafka" not in without
    lines = with_it.splitlines()
    aiokafka = next(i for i, line in enumerate(lines) if line.startswith("| no Faust: aiokafka"))
    assert "| 80,000 | 2000% |" in lines[aiokafka]
    assert lines[aiokafka - 1].startswith("| bare Faust pass-through, batches") and "elderwatch worker" in lines[aiokafka + 1]
