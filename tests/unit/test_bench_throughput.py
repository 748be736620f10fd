"""bench/bench_throughput.py's pure parts: when the pipeline is through, the floor (our code alone), and the table."""

from __future__ import annotations

from bench.bench_throughput import pipeline_done, report
from bench.worker_code import WorkerCode, run_alone
from elderwatch.feed import canonical_messages, with_mess
from elderwatch.simulator import simulate

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


def test_the_floor_runs_every_reading_through_ingest_and_detect_and_keeps_the_books(tmp_path):
    sim = simulate(households=3, days=1, seed=5, out_dir=tmp_path, anomaly_rate=0, warmup_days=0)
    clean = sorted(canonical_messages(sim.out_dir / "readings.csv"), key=lambda m: m.ts)
    messages = list(with_mess(clean, fraction=0.2, seed=1))
    floor = run_alone(messages, batch_size=50)
    ingest, processed = floor["counts"]["ingest"], floor["counts"]["detect"]["processed"]
    assert floor["messages"] == len(messages) > len(clean)
    assert ingest["received"] == len(messages) == ingest["valid"] + ingest["duplicates"] + ingest["dead_lettered"]
    assert ingest["duplicates"] > 0 and ingest["dead_lettered"] > 0  # the re-sends and the garbage
    assert processed == ingest["emitted"] == len(clean)  # every clean reading reached its household's monitor
    assert floor["rate"] > 0 and floor["seconds"] > 0


def test_the_floor_row_sits_last_with_its_cpu_per_reading():
    rows = {"passthrough-send_soon": _row(4000), "passthrough-take": _row(4400),
            "worker-0": {**_row(1000), "label": "elderwatch worker", "env": {}},
            "our-code": {"messages": 1000, "seconds": 0.25, "rate": 4000.0, "worker_cpu_share": 1.0}}
    text = report({"command": "c", "machine": "m", "revision": "r", "partitions": 4, "messages": 1000,
                   "households": 10, "days": 1, "order": "time", "rows": rows})
    table = text[text.index("| pipeline |"):].split("\n\n")[0].splitlines()
    assert table[-1].startswith("| the worker's own code alone")
    assert "| 1,000 | 0.2 of CPU | 4,000 | 100% | 1.00 | 0.25 ms of CPU | – |" in table[-1]


def test_a_checkpoint_writes_each_state_once_however_many_batches_changed_it(tmp_path):
    sim = simulate(households=2, days=1, seed=6, out_dir=tmp_path, anomaly_rate=0, warmup_days=0)
    messages = sorted(canonical_messages(sim.out_dir / "readings.csv"), key=lambda m: m.ts)[:40]
    code = WorkerCode()
    numbered = [(offset, m.key, m.value) for offset, m in enumerate(messages)]
    sends = code.run(numbered[:20]) + code.run(numbered[20:])  # two batches, each with both households
    households = {m.key for m in messages}
    assert len(sends) == len(messages)  # each reading validated, none raised a warning on its first day
    assert code.pending() == len(households)
    records = code.checkpoint()
    keys = [key for key, _ in records]
    assert len(keys) == len(set(keys)) == 3 * len(households)  # per household: two series states and its monitor
    assert households <= set(keys)
    assert code.pending() == 0 and code.checkpoint() == []
    assert code.counts()["detect"]["processed"] == len(messages)
    again = code.run(numbered)
    assert again == [] and code.counts()["ingest"]["duplicates"] == len(messages)  # a re-send is not a reading
