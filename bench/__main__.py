"""``make bench``: every benchmark, each writing its results under bench/results/ (not the 30-minute soak:
``python -m bench.bench_soak``)."""

import sys

from bench import (bench_detect_quality, bench_detect_speed, bench_feedback, bench_ingest, bench_ingest_state,
                   bench_latency, bench_recovery, bench_simulate, bench_throughput, bench_tickets)

if __name__ == "__main__":
    status = bench_simulate.main([]) or bench_ingest_state.main([]) or 0
    status = status or bench_detect_speed.main([]) or bench_detect_quality.main([]) or bench_feedback.main([]) or 0
    status = status or bench_ingest.main([]) or bench_throughput.main([]) or bench_latency.main([]) or 0
    status = status or bench_tickets.main([]) or 0
    sys.exit(status or bench_recovery.main([]) or 0)
