"""A real, throw-away Apache Kafka broker on 127.0.0.1 for tests, demos and benches.

Why a real broker and not a fake: elderwatch runs on Faust (aiokafka) and also
talks to Kafka through kafka-python; both speak the actual wire protocol, and
rebalances, offsets and partitioning are exactly what we want exercised.

How it works:

* ``fetch_jars(version=...)`` asks Maven for ``org.apache.kafka:kafka_2.13:<version>``
  and its runtime classpath (see ``pom.xml`` beside this file: the logging
  binding differs by major version) and copies the jars into a cache outside
  the repository: ``${ELDERWATCH_CACHE:-~/.cache/elderwatch}/kafka-<version>/libs``.
  The fetch lands in a temporary directory that is renamed into place only once
  it is complete, so an interrupted fetch is never mistaken for a finished one.
* ``LocalKafka`` formats a fresh KRaft log directory (combined broker +
  controller, one node), starts ``kafka.Kafka`` with ``java`` in its own
  process group and waits until the broker answers a Metadata request.
  ``stop()`` (also run at interpreter exit) terminates it and removes the data.
* For fault tests the broker can go down and come back as the same cluster:
  ``stop(keep_data=True)`` (clean shutdown) or ``kill()`` (SIGKILL, a crash),
  then ``start()`` again: same log directory, cluster id and ports, so the same
  bootstrap address (``address``, known while it is down) answers again with
  the data it had.

Versions: ``KAFKA_VERSION`` (3.9.2) is the default, what CI and ``make test``
run; ``KAFKA4_VERSION`` is the 4.x release ``make test-kafka4`` runs. 4.x is
KRaft-only, logs through log4j2 (``log4j2.properties``; 3.x reads
``log4j.properties``) and removed old protocol API versions (KIP-896); see
README, "Local Kafka", for what passes on each.

The only environment variables read here are ``ELDERWATCH_CACHE`` (jar cache
location), ``ELDERWATCH_KAFKA_VERSION`` (which Kafka ``LocalKafka`` and
``fetch_jars`` use when not given one) and ``KAFKA_BOOTSTRAP_SERVERS`` (in
``bootstrap_or_start``: use an existing cluster instead of starting one).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

__all__ = [
    "KAFKA4_VERSION",
    "KAFKA_VERSION",
    "BrokerError",
    "LocalKafka",
    "bootstrap_or_start",
    "create_topics",
    "fetch_jars",
    "kafka_version",
    "main",
    "render_server_properties",
]

# The default broker: what CI, `make test`, the demo and the benches run.
KAFKA_VERSION = "3.9.2"
# The 4.x release `make test-kafka4` runs the integration suite against.
KAFKA4_VERSION = "4.4.0"
SUPPORTED_MAJOR_VERSIONS = (3, 4)
KAFKA_VERSION_ENV = "ELDERWATCH_KAFKA_VERSION"

_PACKAGE_DIR = Path(__file__).resolve().parent
POM_PATH = _PACKAGE_DIR / "pom.xml"
LOG4J_PROPERTIES_PATH = _PACKAGE_DIR / "log4j.properties"  # Kafka 3.x: log4j 1 API (reload4j)
LOG4J2_PROPERTIES_PATH = _PACKAGE_DIR / "log4j2.properties"  # Kafka 4.x: log4j2

# Written into the libs directory as the very last step of a successful fetch.
_FETCH_COMPLETE_MARKER = ".fetch-complete"
_LOG_TAIL_LINES = 5
_STOP_GRACE_SECONDS = 15.0

# Heap cap keeps several concurrent test brokers affordable on a small machine;
# the serial collector suits a 512 MB heap and spares the two cores. Not
# -XX:TieredStopAtLevel=1: it starts ~0.3 s faster (1.45 s vs 1.75 s here) but
# C1-only code would make the broker the bottleneck in `make bench`.
_JVM_OPTIONS = (
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
)


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or reached.

    The message is always a single line saying why, fit for a CLI error or a
    ``pytest.fail`` reason.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


def _one_line(text: str) -> str:
    return " | ".join(part.strip() for part in str(text).splitlines() if part.strip())


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------

_VERSION_PATTERN = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def kafka_version(version: str | None = None) -> str:
    """The Kafka version to use: ``version`` if given, else ``$ELDERWATCH_KAFKA_VERSION``, else ``KAFKA_VERSION``.

    Only a plain release of a supported major version (``3.9.2``, ``4.3.1``) is
    accepted; anything else is a BrokerError naming the variable, before any
    Maven run.

    >>> kafka_version("4.3.1")
    '4.3.1'
    """
    from_env = version is None
    chosen = (os.environ.get(KAFKA_VERSION_ENV, "") if from_env else version).strip()
    if not chosen:
        return KAFKA_VERSION
    source = f"${KAFKA_VERSION_ENV}" if from_env else "Kafka version"
    match = _VERSION_PATTERN.fullmatch(chosen)
    if match is None:
        raise BrokerError(f"{source} {chosen!r} is not a Kafka release like {KAFKA_VERSION} or {KAFKA4_VERSION}")
    if int(match.group(1)) not in SUPPORTED_MAJOR_VERSIONS:
        majors = " and ".join(f"{major}.x" for major in SUPPORTED_MAJOR_VERSIONS)
        raise BrokerError(f"{source} {chosen!r}: only Kafka {majors} are supported")
    return chosen


def major_version(version: str) -> int:
    """``4`` for ``"4.3.1"``."""
    return int(version.split(".", 1)[0])


def logging_binding(version: str) -> str:
    """The pom.xml profile giving the broker a logger: ``reload4j`` (3.x) or ``log4j2`` (4.x)."""
    return "log4j2" if major_version(version) >= 4 else "reload4j"


def logging_jvm_option(version: str) -> str:
    """The ``-D`` option pointing the broker's logging at its config file beside this module.

    >>> logging_jvm_option("3.9.2").startswith("-Dlog4j.configuration=file:")
    True
    >>> logging_jvm_option("4.3.1").startswith("-Dlog4j2.configurationFile=file:")
    True
    """
    if logging_binding(version) == "log4j2":
        return f"-Dlog4j2.configurationFile=file:{LOG4J2_PROPERTIES_PATH}"
    return f"-Dlog4j.configuration=file:{LOG4J_PROPERTIES_PATH}"


# --------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Root of elderwatch's download cache (never inside the repository)."""
    configured = os.environ.get("ELDERWATCH_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "elderwatch"


def require_executable(name: str, install_hint: str) -> str:
    """Full path of ``name`` on PATH, or a BrokerError saying it is missing."""
    found = shutil.which(name)
    if not found:
        raise BrokerError(f"no `{name}` on PATH: {install_hint}")
    return found


def _require_java() -> str:
    return require_executable(
        "java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)"
    )


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAVEN_BOILERPLATE = (
    "-> [help",
    "to see the full stack trace",
    "re-run maven",
    "for more information about the errors",
    "[help 1]",
    "after correcting the problems",
)


def last_meaningful_maven_line(output: str) -> str:
    """The line of Maven's output that best says why it failed.

    Maven ends every failure with generic advice ("Re-run Maven using -X ...");
    skip that and return the last line that carries information.
    """
    meaningful = []
    for raw_line in _ANSI_ESCAPE.sub("", output).splitlines():
        line = raw_line.strip()
        text = line.removeprefix("[ERROR]").strip()
        if not text or any(text.lower().startswith(b) for b in _MAVEN_BOILERPLATE):
            continue
        meaningful.append(line)
    if not meaningful:
        return "no output"
    line = meaningful[-1]
    return line if len(line) <= 400 else line[:397] + "..."


def fetch_jars(cache_dir: Path | None = None, version: str | None = None) -> Path:
    """Make sure the jars of Kafka ``version`` are cached; return the libs directory.

    ``version`` defaults to ``kafka_version()`` (``$ELDERWATCH_KAFKA_VERSION``,
    else ``KAFKA_VERSION``). ``cache_dir`` is the cache root (default:
    ``default_cache_dir()``); the jars go to ``<cache_dir>/kafka-<version>/libs``.
    Cheap when already done: no Maven run and no network. Safe to call from
    concurrent processes.
    """
    version = kafka_version(version)
    version_dir = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"kafka-{version}"
    libs_dir = version_dir / "libs"
    if (libs_dir / _FETCH_COMPLETE_MARKER).is_file():
        return libs_dir

    try:
        version_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BrokerError(f"cannot create jar cache {version_dir}: {exc}") from exc
    # Serialise concurrent fetches (parallel test sessions) so Maven runs once.
    with open(version_dir / ".fetch.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if (libs_dir / _FETCH_COMPLETE_MARKER).is_file():
            return libs_dir
        _fetch_jars_locked(version, version_dir, libs_dir)
    return libs_dir


def maven_fetch_command(mvn: str, version: str, output_dir: Path) -> list[str]:
    """The Maven command copying Kafka ``version``'s runtime classpath into ``output_dir``."""
    return [
        mvn, "-q", "-B", "-f", str(POM_PATH),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-Dkafka.logging={logging_binding(version)}",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]


def _fetch_jars_locked(version: str, version_dir: Path, libs_dir: Path) -> None:
    mvn = require_executable("mvn", "install Apache Maven 3.6+ (e.g. apt-get install maven)")
    staging_dir = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=version_dir))
    try:
        try:
            result = subprocess.run(
                maven_fetch_command(mvn, version, staging_dir), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("Maven did not finish fetching the Kafka jars within 15 minutes") from exc
        if result.returncode != 0:
            raise BrokerError(
                f"Maven failed to fetch Kafka {version} jars (exit {result.returncode}): "
                + last_meaningful_maven_line(result.stdout)
            )
        if not any(staging_dir.glob(f"kafka_2.13-{version}.jar")):
            raise BrokerError(f"Maven succeeded but kafka_2.13-{version}.jar is missing from {staging_dir}")
        (staging_dir / _FETCH_COMPLETE_MARKER).write_text(f"kafka {version}\n")
        staging_dir.chmod(0o755)  # mkdtemp makes it private; the cache is shareable
        if libs_dir.exists():  # left over from something other than this function
            shutil.rmtree(libs_dir)
        staging_dir.rename(libs_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Broker configuration
# --------------------------------------------------------------------------


def render_server_properties(
    *, port: int, controller_port: int, log_dir: Path | str, version: str = KAFKA_VERSION
) -> str:
    """server.properties for a one-node KRaft cluster (broker + controller) on 127.0.0.1.

    The same static-quorum layout serves 3.x and 4.x (4.x still accepts
    ``controller.quorum.voters``, so ``StorageTool format`` needs no
    ``--standalone``); 4.x also gets its share-group state topic sized for one
    node.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        # One node: every internal topic must make do with one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # Default 50 partitions each: slow to create on the first consumer group
        # or transaction, and pointless on a single test broker.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        # Tests should not wait 3 s for every first rebalance.
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        # The project creates its topics explicitly with declared partition
        # counts; a typo must fail loudly rather than create a 1-partition topic.
        "auto.create.topics.enable": "false",
        # Fewer threads: the machine is small and may run several brokers.
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if major_version(version) >= 4:
        # Share groups (KIP-932) keep state in an internal topic whose defaults
        # (3 replicas, min ISR 2, 50 partitions) a single node cannot satisfy.
        # Unknown to 3.x, which would only warn about them: rendered for 4.x only.
        settings.update({
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
        })
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def generate_cluster_id() -> str:
    """A random KRaft cluster id: base64url of 16 random bytes, no padding.

    Ids starting with '-' are avoided (as Kafka's own Uuid.randomUuid does):
    StorageTool would read one as a command-line option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for a worker's web server, say)."""
    return _pick_free_ports(1)[0]


def _pick_free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def is_port_free(port: int) -> bool:
    """Whether the JVM could listen on 127.0.0.1:port (it also sets SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _is_stack_trace_line(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("at ") or (stripped.startswith("...") and stripped.endswith("more"))


def tail_of_text(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Last informative lines of some log output joined with ' | ' (stack frames skipped)."""
    informative = [line.strip() for line in text.splitlines() if line.strip() and not _is_stack_trace_line(line)]
    if not informative:
        return "(no output)"
    return " | ".join(line[:300] for line in informative[-lines:])


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Last informative lines of a broker log file, see ``tail_of_text``."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, log_file.tell() - 64 * 1024))
            text = log_file.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no broker log)"
    return tail_of_text(text, lines)


# --------------------------------------------------------------------------
# Readiness probe
# --------------------------------------------------------------------------


def _encode_kafka_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">h", len(raw)) + raw


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def broker_answers_metadata(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the broker answers a Metadata request listing at least one broker.

    Hand-encoded Metadata v1 (all topics) so that polling needs no client
    library and logs nothing. The broker only enables its request handlers once
    it has caught up with the metadata log, so an answer with a broker in it
    means clients can really use it.
    """
    api_key_metadata, api_version, correlation_id = 3, 1, 0x0E1D
    header = struct.pack(">hhi", api_key_metadata, api_version, correlation_id)
    header += _encode_kafka_string("elderwatch-localkafka-probe")
    body = struct.pack(">i", -1)  # null topic array = all topics
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
            response = _recv_exactly(sock, size)
    except (OSError, struct.error):
        return False
    if len(response) < 8:
        return False
    received_correlation_id, broker_count = struct.unpack(">ii", response[:8])
    return received_correlation_id == correlation_id and broker_count > 0


# --------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1


def _die_with_parent_preexec(parent_pid: int):
    """preexec_fn asking Linux to SIGKILL the broker when its parent dies.

    Covers the case atexit cannot: pytest killed with SIGKILL. Best effort;
    silently does nothing where prctl is unavailable.
    """

    def set_parent_death_signal() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return set_parent_death_signal


class LocalKafka:
    """One real Kafka broker (KRaft, single node) on 127.0.0.1.

    >>> broker = LocalKafka(port=None, version="3.9.2")   # nothing happens until start()
    >>> broker.bootstrap_servers is None, broker.version
    (True, '3.9.2')

    Use as ``with LocalKafka() as bootstrap: ...`` or call ``start()`` and
    ``stop()``. The broker runs in its own process group and is stopped at
    interpreter exit (and killed by the kernel if this process dies).

    ``version`` is the Kafka release (default ``kafka_version()``:
    ``$ELDERWATCH_KAFKA_VERSION``, else ``KAFKA_VERSION``).

    Down and up again, for fault tests: ``stop(keep_data=True)`` shuts the
    broker down cleanly, ``kill()`` SIGKILLs it (a crash); either way the next
    ``start()`` brings back the same cluster (same log directory, cluster id
    and ports, no re-format), so clients that kept the bootstrap address reach
    it again and find their topics, records and committed offsets. While it is
    down, ``address`` still says where it will be (``bootstrap_servers`` is
    None). A plain ``stop()`` ends it for good and removes the data.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        ready_timeout: float = 60.0,
        log_path: Path | None = None,
        version: str | None = None,
    ) -> None:
        self.requested_port = port
        self.requested_data_dir = Path(data_dir) if data_dir is not None else None
        self.ready_timeout = ready_timeout
        self.requested_log_path = Path(log_path) if log_path is not None else None
        self.version = kafka_version(version)

        self.port: int | None = None
        self.controller_port: int | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.cluster_id: str | None = None
        self.startup_seconds: float | None = None
        self._owns_data_dir = False
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._lock = threading.Lock()

    # -- public API --------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str | None:
        """``"127.0.0.1:PORT"`` while started, else None."""
        return f"127.0.0.1:{self.port}" if self._process is not None else None

    @property
    def address(self) -> str | None:
        """Where this broker listens, or will again: also while it is down with its data kept.

        Set from the first ``start()`` (or from ``port=``) until a ``stop()``
        that removes the data; lets a test start a client while the broker is down.
        """
        port = self.port if self.port is not None else self.requested_port
        return f"127.0.0.1:{port}" if port is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive (it may still be starting or may have crashed since)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the broker and wait until it serves requests; return its bootstrap address.

        After ``stop(keep_data=True)`` or ``kill()`` this restarts the same
        cluster on the same ports; if another process took a port meanwhile,
        it is a BrokerError (the data is kept, a later ``start()`` may succeed).
        """
        with self._lock:
            if self._process is not None:
                return f"127.0.0.1:{self.port}"
            began = time.monotonic()
            java = _require_java()
            restarting = self._has_kept_data()
            if restarting:
                self._check_kept_ports_free()
            # Fail fast on a taken fixed port, before a possibly long jar fetch.
            elif self.requested_port is not None and not is_port_free(self.requested_port):
                raise BrokerError(f"port {self.requested_port} on 127.0.0.1 is already in use")
            libs_dir = fetch_jars(version=self.version)
            try:
                if not restarting:
                    self._choose_ports()
                    self._prepare_data_dir()
                    self._format_storage(java, libs_dir)
                self._launch(java, libs_dir)
                atexit.unregister(self.stop)  # once, however many restarts
                atexit.register(self.stop)
                self._wait_until_ready()
            except BaseException:
                # A failed first start cleans up everything; a failed restart
                # keeps the data so the caller can look at it or try again.
                self._stop_locked(signal.SIGTERM, keep_data=restarting)
                raise
            self.startup_seconds = time.monotonic() - began
            return f"127.0.0.1:{self.port}"

    def stop(self, *, keep_data: bool = False) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after 15 s). Idempotent.

        By default its temporary data is removed and the next ``start()`` is a
        new cluster. ``keep_data=True`` keeps the log directory, cluster id and
        ports for a restart (and for ``address``); the data is still removed
        at interpreter exit (never a ``data_dir=`` given by the caller).
        """
        with self._lock:
            self._stop_locked(signal.SIGTERM, keep_data=keep_data)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: no clean shutdown, data and ports kept for ``start()``."""
        with self._lock:
            self._stop_locked(signal.SIGKILL, keep_data=True)

    def restart(self) -> str:
        """``stop(keep_data=True)`` then ``start()``: the same cluster back on the same address."""
        self.stop(keep_data=True)
        return self.start()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._process is not None:
            state = f"running on {self.bootstrap_servers}"
        elif self._has_kept_data():
            state = f"down, data kept for {self.address}"
        else:
            state = "stopped"
        return f"<LocalKafka {self.version} {state}>"

    # -- steps -------------------------------------------------------------

    def _has_kept_data(self) -> bool:
        """Whether a previous start formatted a log directory that is still there to restart from."""
        return (
            self.cluster_id is not None
            and self.data_dir is not None
            and (self.data_dir / "kraft-logs" / "meta.properties").is_file()
        )

    def _check_kept_ports_free(self) -> None:
        for port in (self.port, self.controller_port):
            if not is_port_free(port):
                raise BrokerError(
                    f"cannot restart the broker: port {port} on 127.0.0.1 was taken while it was down"
                )

    def _choose_ports(self) -> None:
        if self.requested_port is not None:
            if not is_port_free(self.requested_port):
                raise BrokerError(f"port {self.requested_port} on 127.0.0.1 is already in use")
            self.port = self.requested_port
            self.controller_port = next(p for p in _pick_free_ports(2) if p != self.requested_port)
        else:
            self.port, self.controller_port = _pick_free_ports(2)

    def _prepare_data_dir(self) -> None:
        if self.requested_data_dir is not None:
            self.data_dir = self.requested_data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="elderwatch-kafka-"))
            self._owns_data_dir = True
        self.log_path = self.requested_log_path or self.data_dir / "broker.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh log directory per new cluster: a KRaft dir formatted for
        # another cluster id or port layout would refuse to start.
        kraft_log_dir = self.data_dir / "kraft-logs"
        shutil.rmtree(kraft_log_dir, ignore_errors=True)
        (self.data_dir / "server.properties").write_text(
            render_server_properties(
                port=self.port, controller_port=self.controller_port, log_dir=kraft_log_dir,
                version=self.version,
            )
        )

    def _java_command(self, java: str, libs_dir: Path, main_class: str, *args: str) -> list[str]:
        return [
            java, *_JVM_OPTIONS,
            logging_jvm_option(self.version),
            "-cp", str(libs_dir / "*"),
            main_class, *args,
        ]

    def _format_storage(self, java: str, libs_dir: Path) -> None:
        cluster_id = generate_cluster_id()
        command = self._java_command(
            java, libs_dir, "kafka.tools.StorageTool",
            "format", "-t", cluster_id, "-c", str(self.data_dir / "server.properties"),
        )
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, timeout=max(self.ready_timeout, 30.0),
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("formatting the Kafka log directory timed out") from exc
        if result.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka log directory failed (exit {result.returncode}): "
                + tail_of_text(result.stdout)
            )
        self.cluster_id = cluster_id

    def _launch(self, java: str, libs_dir: Path) -> None:
        command = self._java_command(java, libs_dir, "kafka.Kafka", str(self.data_dir / "server.properties"))
        self._log_file = open(self.log_path, "ab")
        # PDEATHSIG fires when the *thread* that forked exits, so only use it
        # from the main thread, whose death means the process is going away.
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = _die_with_parent_preexec(os.getpid()) if on_main_thread and sys.platform == "linux" else None
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # own process group: Ctrl-C in a terminal reaches us, not the JVM
            preexec_fn=preexec,
        )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            exit_code = self._process.poll()
            if exit_code is not None:
                raise BrokerError(self._describe_failure(f"Kafka broker exited with code {exit_code} before becoming ready"))
            if broker_answers_metadata("127.0.0.1", self.port):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(self._describe_failure(
                    f"Kafka broker did not become ready on 127.0.0.1:{self.port} within {self.ready_timeout:g}s"
                ))
            time.sleep(0.1)

    def _describe_failure(self, headline: str) -> str:
        tail = log_tail(self.log_path)
        if "Address already in use" in tail:
            headline += f" (port {self.port} or {self.controller_port} on 127.0.0.1 is already in use)"
        return f"{headline}; log {self.log_path}: {tail}"

    def _stop_locked(self, first_signal: signal.Signals, *, keep_data: bool) -> None:
        process, self._process = self._process, None
        if process is not None:
            if first_signal == signal.SIGKILL:
                _kill_process_group(process)
            else:
                _terminate_process_group(process, _STOP_GRACE_SECONDS)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if keep_data and self._has_kept_data():
            return  # atexit.stop stays registered: it removes the kept data at exit
        atexit.unregister(self.stop)
        if self._owns_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._owns_data_dir = False
        # A new cluster next time: new ports, a new id, a fresh log directory.
        self.cluster_id = None
        self.port = self.controller_port = None


def _kill_process_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10.0)


def _terminate_process_group(process: subprocess.Popen, grace_seconds: float) -> None:
    if process.poll() is not None:
        return
    for sig, wait_seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_seconds)
            return
        except subprocess.TimeoutExpired:
            continue


def bootstrap_or_start() -> tuple[str, LocalKafka | None]:
    """Bootstrap servers to use: ``$KAFKA_BOOTSTRAP_SERVERS`` if set, else a freshly started LocalKafka.

    The caller owns the returned broker (None when an external cluster is used)
    and should ``stop()`` it when done.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        return external, None
    broker = LocalKafka()
    return broker.start(), broker


# --------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    config: dict[str, dict[str, str]] | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create ``{name: partitions}`` topics (existing ones are left alone) and wait until metadata shows them.

    ``config`` maps a topic name to its topic-level configs, e.g.
    ``{"events": {"cleanup.policy": "compact"}}``.
    """
    if not topics:
        return
    import kafka
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError, for_code

    config = config or {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="elderwatch-create-topics")
    try:
        if int(kafka.__version__.split(".")[0]) >= 3:
            # kafka-python 3 takes a dict and reports per-topic errors.
            request = {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": dict(config.get(name, {})),
                }
                for name, partitions in topics.items()
            }
            result = admin.create_topics(request, timeout_ms=int(timeout * 1000), raise_errors=False)
            for topic in result.get("topics", []):
                error = for_code(topic.get("error_code", 0))
                if topic.get("error_code", 0) and error is not TopicAlreadyExistsError:
                    raise error(f"creating topic {topic.get('name')!r}: {topic.get('error_message')}")
        else:
            for name, partitions in topics.items():
                new_topic = NewTopic(name, partitions, replication_factor, topic_configs=dict(config.get(name, {})))
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([new_topic], timeout_ms=int(timeout * 1000))
        _wait_for_topic_metadata(admin, topics, timeout)
    finally:
        admin.close()


def _wait_for_topic_metadata(admin, topics: dict[str, int], timeout: float) -> None:
    """Poll metadata until every topic has all its partitions with a leader."""
    from kafka.errors import KafkaTimeoutError

    deadline = time.monotonic() + timeout
    while True:
        try:
            described = admin.describe_topics(list(topics))
        except Exception:  # transient: the metadata request itself may race topic creation
            described = []
        ready = set()
        for topic in described:
            name = topic.get("name", topic.get("topic"))
            partitions = topic.get("partitions") or []
            leaders = [p.get("leader_id", p.get("leader", -1)) for p in partitions]
            if (
                topic.get("error_code", 0) == 0
                and len(partitions) >= topics.get(name, 1)
                and all(leader is not None and leader >= 0 for leader in leaders)
            ):
                ready.add(name)
        missing = sorted(set(topics) - ready)
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise KafkaTimeoutError(f"topics not ready after {timeout:g}s: {', '.join(missing)}")
        time.sleep(0.1)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m elderwatch.localkafka",
        description=(
            f"Local Apache Kafka broker for elderwatch development (default {KAFKA_VERSION}; "
            f"{KAFKA4_VERSION} is the tested 4.x; ${KAFKA_VERSION_ENV} or --version picks another)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version_help = f"Kafka release, e.g. {KAFKA4_VERSION} (default: ${KAFKA_VERSION_ENV} or {KAFKA_VERSION})"
    fetch = commands.add_parser("fetch", help="download the broker jars into the cache and print their directory")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: $ELDERWATCH_CACHE or ~/.cache/elderwatch)")
    fetch.add_argument("--version", dest="kafka_version", default=None, metavar="X.Y.Z", help=version_help)
    run = commands.add_parser("run", help="run a broker on 127.0.0.1 until interrupted")
    run.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    run.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the broker (default: 60)")
    run.add_argument("--version", dest="kafka_version", default=None, metavar="X.Y.Z", help=version_help)
    return parser


def _run_until_signalled(port: int | None, ready_timeout: float, version: str | None) -> int:
    stop_requested = threading.Event()

    def request_stop(signum, frame) -> None:
        stop_requested.set()

    broker = LocalKafka(port=port, ready_timeout=ready_timeout, version=version)  # checks the version only
    # Install the handlers before starting so a Ctrl-C during start-up still
    # ends in a clean stop (start() cleans up after itself on any exception).
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bootstrap = broker.start()
        print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
        print(f"elderwatch: kafka {broker.version} ready in {broker.startup_seconds:.1f}s; "
              f"log {broker.log_path}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop_requested.wait(timeout=1.0):
            if broker._process is not None and broker._process.poll() is not None:
                raise BrokerError(
                    f"Kafka broker exited unexpectedly with code {broker._process.returncode}: {log_tail(broker.log_path)}"
                )
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``fetch [--version X.Y.Z]`` or ``run [--port N] [--version X.Y.Z]``; returns the exit code (2 on BrokerError)."""
    args = _build_parser(prog).parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_jars(args.cache_dir, version=args.kafka_version), flush=True)
            return 0
        return _run_until_signalled(args.port, args.ready_timeout, args.kafka_version)
    except BrokerError as exc:
        print(f"elderwatch: kafka: {exc}", file=sys.stderr, flush=True)
        return 2
