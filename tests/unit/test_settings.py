"""``elderwatch.settings.Settings``: environment, aliases, production refusals, immutability."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from elderwatch.settings import Settings
from schemas.readings import Meter


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Start every test from an environment without our variables (CI may set KAFKA_BOOTSTRAP_SERVERS)."""
    for name in list(os.environ):
        if name.startswith("ELDERWATCH_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults():
    s = Settings()
    assert s.environment == "development"
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.replication_factor == 1 and s.partitions == 4
    assert s.max_future == timedelta(hours=1)


def test_env_vars_are_read(clean_env):
    clean_env.setenv("ELDERWATCH_APP_ID", "ew-test")
    clean_env.setenv("ELDERWATCH_PARTITIONS", "12")
    clean_env.setenv("ELDERWATCH_TOPIC_PREFIX", "staging.")
    clean_env.setenv("ELDERWATCH_DATA_DIR", "/var/lib/ew")
    clean_env.setenv("ELDERWATCH_MAX_FUTURE_S", "120")
    clean_env.setenv("ELDERWATCH_WEB_PORT", "7000")
    s = Settings()
    assert (s.app_id, s.partitions, s.topic_prefix, s.data_dir, s.web_port) == (
        "ew-test", 12, "staging.", Path("/var/lib/ew"), 7000)
    assert s.max_future == timedelta(seconds=120)


def test_unprefixed_names_are_ignored(clean_env):
    clean_env.setenv("PARTITIONS", "99")
    clean_env.setenv("APP_ID", "other")
    s = Settings()
    assert s.partitions == 4 and s.app_id == "elderwatch"


@pytest.mark.parametrize(("name", "value"), [("ELDERWATCH_PARTITIONS", "0"), ("ELDERWATCH_WEB_PORT", "70000"),
                                             ("ELDERWATCH_ENVIRONMENT", "staging"),
                                             ("ELDERWATCH_DEDUP_HORIZON_H", "0"),
                                             ("ELDERWATCH_REPLICATION_FACTOR", "three")])
def test_invalid_env_values_refused(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_kafka_bootstrap_servers_alias(clean_env):
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    assert Settings().kafka_bootstrap_servers == "kafka-a:9092,kafka-b:9092"


def test_prefixed_bootstrap_wins_over_alias(clean_env):
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "generic:9092")
    clean_env.setenv("ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS", "specific:9092")
    assert Settings().kafka_bootstrap_servers == "specific:9092"


def test_production_ok_with_real_cluster(clean_env, tmp_path):
    clean_env.setenv("ELDERWATCH_ENVIRONMENT", "production")
    clean_env.setenv("ELDERWATCH_REPLICATION_FACTOR", "3")
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1.prod:9092,kafka-2.prod:9092")
    clean_env.setenv("ELDERWATCH_STAFF_TOKENS_FILE", str(tmp_path / "tokens.json"))
    clean_env.setenv("ELDERWATCH_SECRET_KEY", SECRET)
    clean_env.setenv("ELDERWATCH_PUBLIC_URL", "https://elderwatch.example.org")
    s = Settings()
    assert s.environment == "production" and s.replication_factor == 3 and not s.trusts_staff_header


SECRET = "k7Jq2v9XwL0pR4sT8yB1nM6cF3hD5gZa"  # 32 characters, made up for this test


@pytest.mark.parametrize(("change", "message"), [
    ({"ELDERWATCH_STAFF_TOKENS_FILE": None}, "USERS_FILE"),               # without users anyone is any staff member
    ({"ELDERWATCH_CLOCK_OFFSET_FILE": "offset"}, "tests only"),           # a movable clock escalates at will
    ({"ELDERWATCH_SECRET_KEY": None}, "SECRET_KEY"),                      # sessions signed with nothing
    ({"ELDERWATCH_SECRET_KEY": "too-short"}, "SECRET_KEY"),
    ({"ELDERWATCH_SECRET_KEY": "elderwatch-demo-secret-key-not-for-production"}, "SECRET_KEY"),  # the demo's
    ({"ELDERWATCH_PUBLIC_URL": "http://elderwatch.example.org"}, "https"),  # cookies are Secure
], ids=["no-users", "test-clock", "no-secret", "short-secret", "demo-secret", "plain-http"])
def test_production_refuses_unsafe_settings(clean_env, tmp_path, change, message):
    safe = {"ELDERWATCH_ENVIRONMENT": "production", "ELDERWATCH_REPLICATION_FACTOR": "3",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1.prod:9092", "ELDERWATCH_STAFF_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "ELDERWATCH_SECRET_KEY": SECRET, "ELDERWATCH_PUBLIC_URL": "https://elderwatch.example.org"}
    for variable, value in {**safe, **change}.items():
        if value is not None:
            clean_env.setenv(variable, str(tmp_path / value) if variable.endswith("_FILE") and "/" not in value else value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_users_file_alone_is_enough_in_production(clean_env, tmp_path):
    for variable, value in {"ELDERWATCH_ENVIRONMENT": "production", "ELDERWATCH_REPLICATION_FACTOR": "3",
                            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1.prod:9092", "ELDERWATCH_USERS_FILE": str(tmp_path / "u.json"),
                            "ELDERWATCH_SECRET_KEY": SECRET, "ELDERWATCH_PUBLIC_URL": "https://ew.example.org"}.items():
        clean_env.setenv(variable, value)
    assert not Settings().trusts_staff_header
    clean_env.setenv("ELDERWATCH_ENVIRONMENT", "development")
    assert not Settings().trusts_staff_header  # a users file: the header means nothing, in development too


@pytest.mark.parametrize(("replication", "servers", "message"), [
    ("1", "kafka-1.prod:9092", "replication_factor"),
    ("2", "kafka-1.prod:9092", "replication_factor"),
    ("3", "127.0.0.1:9092", "loopback"),
    ("3", "127.1.2.3:9092", "loopback"),
    ("3", "localhost:9092", "loopback"),
], ids=["rf1", "rf2", "ipv4-loopback", "ipv4-loopback-range", "localhost"])
def test_production_refusals(clean_env, replication, servers, message):
    clean_env.setenv("ELDERWATCH_ENVIRONMENT", "production")
    clean_env.setenv("ELDERWATCH_REPLICATION_FACTOR", replication)
    clean_env.setenv("ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS", servers)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_production_default_broker_refused(clean_env):
    clean_env.setenv("ELDERWATCH_ENVIRONMENT", "production")
    clean_env.setenv("ELDERWATCH_REPLICATION_FACTOR", "3")
    with pytest.raises(ValidationError, match="loopback"):
        Settings()


def test_development_allows_loopback_and_rf1():
    s = Settings(environment="development", replication_factor=1, kafka_bootstrap_servers="localhost:9092")
    assert s.kafka_bootstrap_servers == "localhost:9092"


@pytest.mark.parametrize("servers", ["[::1]:9092", "kafka-1.prod:9092,127.0.0.1:9092"], ids=["ipv6", "second-in-list"])
def test_production_refuses_every_loopback_form(clean_env, servers):
    clean_env.setenv("ELDERWATCH_ENVIRONMENT", "production")
    clean_env.setenv("ELDERWATCH_REPLICATION_FACTOR", "3")
    clean_env.setenv("ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS", servers)
    with pytest.raises(ValidationError):
        Settings()


def test_frozen():
    s = Settings()
    with pytest.raises(ValidationError):
        s.partitions = 8
    assert s.partitions == 4


def test_ingest_limits_follow_settings(clean_env):
    clean_env.setenv("ELDERWATCH_DEDUP_HORIZON_H", "6")
    clean_env.setenv("ELDERWATCH_MAX_WATER_LITRES_PER_HOUR", "1000")
    clean_env.setenv("ELDERWATCH_ELECTRICITY_READBACK_TOLERANCE_KWH", "0.5")
    limits = Settings().ingest_limits()
    assert limits.dedup_horizon == timedelta(hours=6)
    assert limits.max_per_hour == {Meter.WATER: 1000.0, Meter.ELECTRICITY: 60.0}
    assert limits.readback_tolerance == {Meter.WATER: 500.0, Meter.ELECTRICITY: 0.5}
