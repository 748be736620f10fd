"""Unit tests for the pure parts of elderwatch.localkafka (no broker, no Maven, no network)."""

from __future__ import annotations

import base64
import socket
import stat
import textwrap

import pytest

import elderwatch.localkafka as localkafka
from elderwatch.localkafka import (
    KAFKA_VERSION,
    BrokerError,
    LocalKafka,
    bootstrap_or_start,
    fetch_jars,
    main,
    render_server_properties,
)


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
