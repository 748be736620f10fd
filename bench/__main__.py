"""``make bench``: every benchmark, each writing its results under bench/results/."""

import sys

from bench import bench_ingest, bench_ingest_state, bench_simulate

if __name__ == "__main__":
    status = bench_simulate.main([]) or bench_ingest_state.main([]) or 0
    sys.exit(status or bench_ingest.main([]) or 0)
