"""Unit tests for the pure parts of elderwatch.localkafka (no broker, no Maven, no network)."""

from __future__ import annotations

import base64
import socket
import stat
import textwrap

import pytest

import elderwatch.localkafka as localkafka
from elderwatch.localkafka import (
    KAFKA4_VERSION,
    KAFKA_VERSION,
    BrokerError,
    LocalKafka,
    bootstrap_or_start,
    fetch_jars,
    main,
    render_server_properties,
)


@pytest.fixture(autouse=True)
def _default_kafka_version(monkeypatch):
    """These tests mean the default version unless they say otherwise, whatever the shell exported."""
    monkeypatch.delenv("ELDERWATCH_KAFKA_VERSION", raising=False)


def _parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_describe_a_single_node_kraft_cluster_on_loopback(tmp_path):
    props = _parse_properties(render_server_properties(port=19092, controller_port=19093, log_dir=tmp_path))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_id_is_unpadded_base64url_of_16_bytes():
    cluster_id = localkafka.generate_cluster_id()
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8 encodes to '-' as the first base64url character.
    draws = iter([b"\xf8" + bytes(15), bytes(16)])
    monkeypatch.setattr(localkafka.os, "urandom", lambda n: next(draws))
    assert localkafka.generate_cluster_id() == "A" * 22


def test_broker_error_is_always_one_line():
    assert str(BrokerError("first\n  second\n\nthird")) == "first | second | third"


def test_missing_java_is_a_one_line_broker_error(monkeypatch):
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: None)
    broker = LocalKafka()
    with pytest.raises(BrokerError, match=r"^no `java` on PATH") as raised:
        broker.start()
    assert "\n" not in str(raised.value)
    assert broker.bootstrap_servers is None
    broker.stop()  # harmless when never started


def test_missing_mvn_is_reported_when_jars_are_not_cached(monkeypatch, tmp_path):
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match=r"^no `mvn` on PATH"):
        fetch_jars(tmp_path)
    assert not (tmp_path / f"kafka-{KAFKA_VERSION}" / "libs").exists()


def test_cached_jars_need_no_maven(monkeypatch, tmp_path):
    libs = tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".fetch-complete").write_text("done\n")
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: None)  # Maven would fail
    assert fetch_jars(tmp_path) == libs


def test_cache_root_comes_from_elderwatch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ELDERWATCH_CACHE", str(tmp_path))
    assert localkafka.default_cache_dir() == tmp_path


def _fake_mvn(tmp_path, script: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_maven_failure_reports_its_meaningful_line_and_leaves_no_partial_cache(monkeypatch, tmp_path):
    bin_dir = _fake_mvn(tmp_path, """\
        echo '[ERROR] Failed to execute goal on project x: Could not resolve dependencies: no network'
        echo '[ERROR] '
        echo '[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.'
        echo '[ERROR] Re-run Maven using the -X switch to enable full debug logging.'
        echo '[ERROR] For more information about the errors and possible solutions, please read:'
        echo '[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/DependencyResolutionException'
        exit 1
        """)
    monkeypatch.setenv("PATH", str(bin_dir))
    cache = tmp_path / "cache"

    with pytest.raises(BrokerError, match="Could not resolve dependencies: no network") as raised:
        fetch_jars(cache)

    assert "exit 1" in str(raised.value)
    version_dir = cache / f"kafka-{KAFKA_VERSION}"
    assert sorted(p.name for p in version_dir.iterdir()) == [".fetch.lock"]


def test_successful_fetch_is_renamed_into_place_with_marker(monkeypatch, tmp_path):
    # A fake Maven that "copies" the broker jar into -DoutputDirectory.
    bin_dir = _fake_mvn(tmp_path, f"""\
        for arg in "$@"; do
          case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
        done
        : > "$out/kafka_2.13-{KAFKA_VERSION}.jar"  # PATH holds only this script: builtins only
        """)
    monkeypatch.setenv("PATH", str(bin_dir))
    cache = tmp_path / "cache"

    libs = fetch_jars(cache)

    assert libs == cache / f"kafka-{KAFKA_VERSION}" / "libs"
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert (libs / ".fetch-complete").is_file()
    assert sorted(p.name for p in libs.parent.iterdir()) == [".fetch.lock", "libs"]


def test_last_meaningful_maven_line_strips_colour_and_advice():
    output = "\x1b[1;31m[ERROR] Boom: artifact missing\x1b[m\n[ERROR] -> [Help 1]\n\n"
    assert localkafka.last_meaningful_maven_line(output) == "[ERROR] Boom: artifact missing"
    assert localkafka.last_meaningful_maven_line("") == "no output"


def test_log_tail_keeps_the_last_informative_lines(tmp_path):
    log = tmp_path / "broker.log"
    log.write_text("\n".join(
        [f"line {i}" for i in range(10)]
        + ["java.net.BindException: Address already in use", "\tat sun.nio.ch.Net.bind(Net.java:555)", "\t... 7 more", ""]
    ))
    assert localkafka.log_tail(log) == "line 6 | line 7 | line 8 | line 9 | java.net.BindException: Address already in use"
    assert localkafka.log_tail(tmp_path / "missing.log") == "(no broker log)"


def test_port_in_use_is_detected():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        assert not localkafka.is_port_free(occupier.getsockname()[1])


def test_metadata_probe_is_false_when_nothing_listens():
    port = localkafka._pick_free_ports(1)[0]
    assert localkafka.broker_answers_metadata("127.0.0.1", port, timeout=0.5) is False


def test_bootstrap_or_start_uses_the_external_cluster_when_configured(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    monkeypatch.setattr(localkafka, "LocalKafka", None)  # would blow up if a broker were started
    assert bootstrap_or_start() == ("kafka-a:9092,kafka-b:9092", None)


def test_cli_fetch_prints_the_libs_directory(capsys, tmp_path):
    libs = tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".fetch-complete").write_text("done\n")
    assert main(["fetch", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(libs)


def test_cli_reports_broker_errors_on_one_stderr_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: None)
    assert main(["run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("elderwatch: kafka: no `java` on PATH")
    assert captured.err.count("\n") == 1


# --------------------------------------------------------------------------- versions


def test_version_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("ELDERWATCH_KAFKA_VERSION", raising=False)
    assert localkafka.kafka_version() == KAFKA_VERSION == "3.9.2"
    monkeypatch.setenv("ELDERWATCH_KAFKA_VERSION", f" {KAFKA4_VERSION} ")
    assert localkafka.kafka_version() == KAFKA4_VERSION
    assert localkafka.kafka_version("3.8.1") == "3.8.1"  # an argument wins over the environment
    assert LocalKafka().version == KAFKA4_VERSION
    assert LocalKafka(version="3.9.2").version == "3.9.2"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("latest", "is not a Kafka release"),
        ("4.3", "is not a Kafka release"),
        ("4.3.1; rm -rf /", "is not a Kafka release"),
        ("2.8.2", "only Kafka 3.x and 4.x are supported"),
        ("5.0.0", "only Kafka 3.x and 4.x are supported"),
    ],
)
def test_a_bad_version_in_the_environment_is_one_line_naming_the_variable(monkeypatch, value, reason):
    monkeypatch.setenv("ELDERWATCH_KAFKA_VERSION", value)
    with pytest.raises(BrokerError, match=reason) as raised:
        LocalKafka()
    assert str(raised.value).startswith("$ELDERWATCH_KAFKA_VERSION ")
    assert "\n" not in str(raised.value)


def test_a_bad_version_argument_fails_before_maven(monkeypatch, tmp_path):
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: pytest.fail("Maven must not be looked for"))
    with pytest.raises(BrokerError, match=r"^Kafka version '4\.x' is not a Kafka release"):
        fetch_jars(tmp_path, version="4.x")
    assert list(tmp_path.iterdir()) == []


def test_server_properties_add_one_node_share_group_state_on_4x_only(tmp_path):
    common = dict(port=19092, controller_port=19093, log_dir=tmp_path)
    on_3 = _parse_properties(render_server_properties(**common, version="3.9.2"))
    on_4 = _parse_properties(render_server_properties(**common, version=KAFKA4_VERSION))

    share_keys = {key for key in on_4 if key.startswith("share.coordinator.")}
    assert share_keys == {
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "share.coordinator.state.topic.num.partitions",
    }
    assert {on_4[key] for key in share_keys} == {"1"}
    assert not any(key.startswith("share.") for key in on_3)  # unknown to 3.x
    # Everything else, the static KRaft quorum included, is the same on both.
    assert {k: v for k, v in on_4.items() if k not in share_keys} == on_3
    assert render_server_properties(**common) == render_server_properties(**common, version=KAFKA_VERSION)


def test_logging_config_follows_the_major_version():
    for version, option, config in [
        ("3.9.2", "-Dlog4j.configuration=file:", localkafka.LOG4J_PROPERTIES_PATH),
        (KAFKA4_VERSION, "-Dlog4j2.configurationFile=file:", localkafka.LOG4J2_PROPERTIES_PATH),
    ]:
        assert localkafka.logging_jvm_option(version) == f"{option}{config}"
        assert config.is_file()  # shipped as package data beside the module


def test_log4j2_config_sends_info_to_stdout_and_quiets_the_same_loggers_as_log4j():
    log4j2 = _parse_properties(
        "\n".join(line.replace(" = ", "=") for line in localkafka.LOG4J2_PROPERTIES_PATH.read_text().splitlines())
    )
    log4j = _parse_properties(localkafka.LOG4J_PROPERTIES_PATH.read_text())
    assert log4j2["rootLogger.level"] == "INFO"
    assert log4j2["appender.stdout.type"] == "Console"
    levels_2 = {log4j2[key]: log4j2[key[: -len(".name")] + ".level"] for key in log4j2 if key.startswith("logger.") and key.endswith(".name")}
    levels_1 = {key.removeprefix("log4j.logger."): value for key, value in log4j.items() if key.startswith("log4j.logger.")}
    assert levels_2 == levels_1


def test_maven_is_asked_for_the_version_and_its_logging_binding(tmp_path):
    for version, binding in [("3.9.2", "reload4j"), ("4.3.1", "log4j2"), ("4.4.0", "log4j2")]:
        command = localkafka.maven_fetch_command("mvn", version, tmp_path)
        assert f"-Dkafka.version={version}" in command
        assert f"-Dkafka.logging={binding}" in command
        assert f"-DoutputDirectory={tmp_path}" in command
    pom = localkafka.POM_PATH.read_text()
    # Each binding named above is a profile of pom.xml switched on by that value.
    for binding in ("reload4j", "log4j2"):
        assert f"<name>kafka.logging</name>\n          <value>{binding}</value>" in pom


def test_jars_are_cached_per_version(monkeypatch, tmp_path):
    libs_4 = tmp_path / f"kafka-{KAFKA4_VERSION}" / "libs"
    libs_4.mkdir(parents=True)
    (libs_4 / ".fetch-complete").write_text("done\n")
    monkeypatch.setattr(localkafka.shutil, "which", lambda name: None)  # Maven would fail

    assert fetch_jars(tmp_path, version=KAFKA4_VERSION) == libs_4
    monkeypatch.setenv("ELDERWATCH_KAFKA_VERSION", KAFKA4_VERSION)
    assert fetch_jars(tmp_path) == libs_4
    with pytest.raises(BrokerError, match=r"^no `mvn` on PATH"):  # 3.9.2 is not cached here
        fetch_jars(tmp_path, version="3.9.2")


def test_fetch_passes_the_version_to_maven_and_checks_that_version_s_jar(monkeypatch, tmp_path):
    args_file = tmp_path / "mvn-args"
    bin_dir = _fake_mvn(tmp_path, f"""\
        echo "$@" > {args_file}
        for arg in "$@"; do
          case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
        done
        : > "$out/kafka_2.13-3.9.2.jar"  # the wrong version's jar
        """)
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(BrokerError, match=rf"kafka_2\.13-{KAFKA4_VERSION}\.jar is missing"):
        fetch_jars(tmp_path / "cache", version=KAFKA4_VERSION)
    assert f"-Dkafka.version={KAFKA4_VERSION} -Dkafka.logging=log4j2" in args_file.read_text()
    assert not (tmp_path / "cache" / f"kafka-{KAFKA4_VERSION}" / "libs").exists()


def test_cli_fetch_takes_a_version(capsys, tmp_path):
    libs = tmp_path / f"kafka-{KAFKA4_VERSION}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".fetch-complete").write_text("done\n")
    assert main(["fetch", "--cache-dir", str(tmp_path), "--version", KAFKA4_VERSION]) == 0
    assert capsys.readouterr().out.strip() == str(libs)


def test_cli_run_reports_a_bad_version_and_exits_2(capsys):
    assert main(["run", "--version", "9.9.9"]) == 2
    assert capsys.readouterr().err == "elderwatch: kafka: Kafka version '9.9.9': only Kafka 3.x and 4.x are supported\n"


# --------------------------------------------------------------------------- down and up again


def test_a_broker_never_started_has_nothing_to_restart_and_stops_or_dies_quietly():
    broker = LocalKafka(version="3.9.2")
    assert broker.address is None and broker.cluster_id is None
    assert not broker.is_running
    broker.kill()
    broker.stop(keep_data=True)
    broker.stop()
    assert repr(broker) == "<LocalKafka 3.9.2 stopped>"
    assert LocalKafka(port=19092).address == "127.0.0.1:19092"  # known before the first start
