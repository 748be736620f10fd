"""The feed's pacing and mess-making, with an injected clock (no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from elderwatch.feed import Outgoing, paced, parse_speed, with_mess

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def _msg(minutes: int, hh: str = "hh-1") -> Outgoing:
    ts = T0 + timedelta(minutes=minutes)
    return Outgoing(hh.encode(), json.dumps({"household_id": hh, "ts": ts.isoformat()}).encode(), ts)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_paced_replay_orders_by_data_time_and_sleeps_at_the_given_speed():
    clock = FakeClock()
    # Two households, file order by household (as the simulator writes): replay interleaves them.
    messages = [_msg(0, "a"), _msg(15, "a"), _msg(30, "a"), _msg(0, "b"), _msg(15, "b")]
    out = list(paced(messages, 60.0, sleep=clock.sleep, monotonic=clock.monotonic))
    assert [m.ts for m in out] == sorted(m.ts for m in messages)
    assert clock.now == pytest.approx(30 * 60 / 60)  # 30 data-minutes at 60x = 30 s


def test_max_speed_keeps_file_order_and_never_sleeps():
    clock = FakeClock()
    messages = [_msg(30), _msg(0)]
    assert list(paced(messages, None, sleep=clock.sleep, monotonic=clock.monotonic)) == messages
    assert clock.slept == []


@pytest.mark.parametrize("text", ["0x", "-2", "fast"])
def test_bad_speed_is_refused(text):
    with pytest.raises(ValueError):
        parse_speed(text)


def test_mess_adds_keyed_resends_and_garbage_in_the_asked_proportion():
    clean = [_msg(i * 15) for i in range(4000)]
    messy = list(with_mess(clean, fraction=0.1, seed=3))
    extra = len(messy) - len(clean)
    assert 300 < extra < 500  # ~10%
    resends = [m for m in messy[1:] if m.value in {c.value for c in clean}]
    assert len(resends) > len(clean)  # originals plus re-sends
    assert all(m.key == b"hh-1" for m in resends)  # a retry keeps its household key


class _Future:
    def __init__(self, error: BaseException | None) -> None:
        self.exception, self.is_done = error, True

    def failed(self) -> bool:
        return self.exception is not None


class _Producer:
    """kafka-python's KafkaProducer as far as feed uses it; every ``fail_every``-th send is never acknowledged."""

    def __init__(self, fail_every: int, **config) -> None:
        self.fail_every, self.config, self.sent = fail_every, config, 0

    def send(self, topic, key=None, value=None) -> _Future:
        self.sent += 1
        return _Future(TimeoutError("delivery timed out") if self.fail_every and self.sent % self.fail_every == 0
                       else None)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("messages", [25, 25_000])  # and past the bounded list of pending sends
def test_a_message_the_broker_never_acknowledged_is_an_error_not_a_silent_gap(monkeypatch, messages):
    from elderwatch import feed as feed_module

    monkeypatch.setattr(feed_module, "KafkaProducer", lambda **config: _Producer(7, **config))
    with pytest.raises(feed_module.FeedError, match=f"{messages // 7} of {messages} messages were not acknowledged") as err:
        feed_module.feed((_msg(i) for i in range(messages)), bootstrap="127.0.0.1:1", topic="t", progress=False)
    assert err.value.acknowledged == messages - messages // 7


def test_a_feed_the_broker_acknowledged_returns_its_count_with_an_idempotent_producer(monkeypatch):
    from elderwatch import feed as feed_module

    made = []
    monkeypatch.setattr(feed_module, "KafkaProducer", lambda **config: made.append(_Producer(0, **config)) or made[-1])
    assert feed_module.feed((_msg(i) for i in range(30)), bootstrap="127.0.0.1:1", topic="t", progress=False) == 30
    # retries left to kafka-python (until the delivery timeout, idempotent): a limit would turn a slow broker into a gap
    assert "retries" not in made[0].config and made[0].config["acks"] == "all"
