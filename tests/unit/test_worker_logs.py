"""faust's "producer buffer full" warning (flow control under a backlog, several a second) reaches the worker's log
at most once a minute, with the count of those held back; every other record passes."""

from __future__ import annotations

import logging

from elderwatch.worker import EveryMinuteAtMost


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("faust.transport.producer", logging.WARNING, __file__, 1, msg, None, None)


def test_one_buffer_full_warning_a_minute_with_the_count_held_back():
    now = [0.0]
    limit = EveryMinuteAtMost("producer buffer full", clock=lambda: now[0])
    first = record("producer buffer full size 1001")
    assert limit.filter(first) and first.getMessage() == "producer buffer full size 1001"
    passed = []
    for _ in range(5):
        now[0] += 10
        passed.append(limit.filter(record("producer buffer full size 1500")))
    assert passed == [False] * 5
    now[0] += 10  # a minute after the first
    later = record("producer buffer full size 1200")
    assert limit.filter(later)
    assert later.getMessage() == "producer buffer full size 1200 (5 more since the last one, not logged)"
    now[0] += 1
    assert not limit.filter(record("producer buffer full size 1200"))


def test_other_records_always_pass():
    limit = EveryMinuteAtMost("producer buffer full", clock=lambda: 0.0)
    assert limit.filter(record("producer buffer full size 1001"))
    other = record("producer flush took 0.2")
    assert all(limit.filter(other) for _ in range(3))
    assert other.getMessage() == "producer flush took 0.2"


def test_faust_still_warns_in_those_words_on_that_logger():
    # the worker installs the filter on this logger's name, for this prefix: an upgrade that changes either
    # would let the warnings through again
    import inspect

    import faust.transport.producer as producer

    assert producer.logger.name == "faust.transport.producer"
    assert 'logger.warning(f"producer buffer full size' in inspect.getsource(producer.ProducerBuffer.wait_until_ebb)
