"""The local Kafka broker against real clients: kafka-python and aiokafka (what Faust uses)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from elderwatch.localkafka import BrokerError, LocalKafka, create_topics


def _consume(bootstrap: str, topic: str, group_id: str, expected: int, timeout: float = 30.0):
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def test_keyed_round_trip_over_three_partitions(kafka_bootstrap, unique_prefix):
    topic = f"{unique_prefix}-roundtrip"
    create_topics(kafka_bootstrap, {topic: 3})
    sent = {f"meter-{i:03d}".encode(): f"reading-{i}".encode() for i in range(100)}

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for key, value in sent.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    records = _consume(kafka_bootstrap, topic, group_id=f"{unique_prefix}-group", expected=len(sent))

    assert len(records) == len(sent)
    assert {record.key: record.value for record in records} == sent
    assert {record.partition for record in records} == {0, 1, 2}


def test_create_topics_is_idempotent_and_applies_config(kafka_bootstrap, unique_prefix):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    topic = f"{unique_prefix}-compacted"
    create_topics(kafka_bootstrap, {topic: 2}, config={topic: {"cleanup.policy": "compact"}})
    create_topics(kafka_bootstrap, {topic: 2})  # already exists: no error

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        partitions = admin.describe_topics([topic])[0]["partitions"]
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert len(partitions) == 2
    assert "compact" in repr(described)


def test_aiokafka_round_trip(kafka_bootstrap, unique_prefix):
    """Faust speaks to Kafka through aiokafka: prove the broker (3.9, or 4.x under make test-kafka4) serves its protocol versions."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"{unique_prefix}-aiokafka"
    create_topics(kafka_bootstrap, {topic: 2})

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, key=b"k%d" % i, value=b"v%d" % i)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=f"{unique_prefix}-aio",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                async for message in consumer:
                    values.append(message.value)
                    if len(values) == 10:
                        break
        finally:
            await consumer.stop()
        return values

    assert sorted(asyncio.run(round_trip())) == sorted(b"v%d" % i for i in range(10))


def test_requested_port_already_in_use_is_reported():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        busy_port = occupier.getsockname()[1]

        with pytest.raises(BrokerError, match=rf"\b{busy_port}\b") as raised:
            LocalKafka(port=busy_port).start()
    assert "\n" not in str(raised.value)


def test_stop_closes_the_port_removes_data_and_is_idempotent():
    broker = LocalKafka()
    bootstrap = broker.start()
    port, data_dir, pid = broker.port, broker.data_dir, broker.pid
    assert bootstrap == f"127.0.0.1:{port}"
    assert data_dir.is_dir()

    broker.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert broker.bootstrap_servers is None
    broker.stop()  # second stop is a no-op


def test_context_manager_starts_and_stops():
    with LocalKafka() as bootstrap:
        host, port = bootstrap.split(":")
        socket.create_connection((host, int(port)), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()


def _produce(bootstrap: str, topic: str, records: dict[bytes, bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_broker_comes_back_as_the_same_cluster_after_a_clean_stop_and_after_a_kill(unique_prefix):
    """What fault tests need: the broker goes down mid-stream and returns on the same address with its data."""
    broker = LocalKafka()
    try:
        bootstrap = broker.start()
        data_dir, cluster_id = broker.data_dir, broker.cluster_id
        meta = (data_dir / "kraft-logs" / "meta.properties").read_text()
        topic = f"{unique_prefix}-restart"
        create_topics(bootstrap, {topic: 2})
        before = {b"k%d" % i: b"before-%d" % i for i in range(20)}
        _produce(bootstrap, topic, before)

        broker.stop(keep_data=True)
        assert _port_refuses(broker.port)
        assert broker.bootstrap_servers is None and not broker.is_running
        assert broker.address == bootstrap  # where a client started now should look
        assert data_dir.is_dir()

        assert broker.start() == bootstrap
        between = {b"j%d" % i: b"between-%d" % i for i in range(20)}
        _produce(bootstrap, topic, between)

        first_pid = broker.pid
        broker.kill()  # a crash: no clean shutdown
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)
        assert _port_refuses(broker.port)
        assert broker.address == bootstrap

        assert broker.start() == bootstrap
        assert broker.data_dir == data_dir and broker.cluster_id == cluster_id
        assert (data_dir / "kraft-logs" / "meta.properties").read_text() == meta  # not re-formatted
        records = _consume(bootstrap, topic, group_id=f"{unique_prefix}-after", expected=40)
        assert {record.key: record.value for record in records} == before | between
        assert len(records) == 40  # nothing lost, nothing doubled
    finally:
        broker.stop()
    assert not data_dir.exists()
    assert broker.address is None  # the next start() is a new cluster


def test_restart_refuses_a_port_taken_while_the_broker_was_down():
    broker = LocalKafka()
    try:
        broker.start()
        port = broker.port
        broker.stop(keep_data=True)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(BrokerError, match=rf"port {port} on 127\.0\.0\.1 was taken while it was down"):
                broker.start()
        assert broker.data_dir.is_dir() and broker.address == f"127.0.0.1:{port}"  # kept for another try
        assert broker.restart() == f"127.0.0.1:{port}"
    finally:
        broker.stop()


def test_the_worker_creates_its_changelogs_compacted_with_hourly_segments(kafka_bootstrap, unique_prefix):
    """A restart reads what the broker has not compacted: segments that close after an hour bound it."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from elderwatch.settings import Settings
    from elderwatch.worker import ensure_topics
    from streams.tables import ALL_TABLES, changelog_topic

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=unique_prefix,
                        topic_prefix=f"{unique_prefix}.", partitions=2)
    ensure_topics(settings)
    names = [changelog_topic(unique_prefix, table) for table in ALL_TABLES]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        admin.close()
    configs = described["topic"]  # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
    assert {name: (configs[name]["cleanup.policy"]["value"], configs[name]["segment.ms"]["value"])
            for name in names} == {name: ("compact", "3600000") for name in names}
