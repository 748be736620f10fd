"""Shared pytest set-up for elderwatch.

* Tests under ``tests/integration/`` are marked ``integration`` automatically.
* Tests marked ``soak`` are skipped unless ``--soak`` is given.
* ``kafka_bootstrap`` (session) gives a real Kafka: ``$KAFKA_BOOTSTRAP_SERVERS``
  if set, otherwise a local broker started on first use and stopped at the end
  of the session. A broker that cannot start fails the tests (never skips them):
  a silently skipped integration suite looks exactly like a passing one.
* ``unique_prefix`` gives each test its own short prefix for topic names and
  app ids, so tests sharing the session broker never see each other's data.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from elderwatch.localkafka import BrokerError, bootstrap_or_start

_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="also run tests marked soak (long-running)")


# tryfirst: the markers must be in place before `-m` selection looks at them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_soak = config.getoption("--soak")
    skip_soak = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
        if not run_soak and item.get_closest_marker("soak") is not None:
            item.add_marker(skip_soak)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker, shared by the whole session."""
    try:
        bootstrap, broker = bootstrap_or_start()
    except BrokerError as exc:
        pytest.fail(f"local Kafka broker unavailable: {exc}", pytrace=False)
    try:
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A short string unique to this test, e.g. ``t1a2b3c4d``, for topic names and app ids."""
    return f"t{uuid.uuid4().hex[:8]}"
