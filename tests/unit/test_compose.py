"""Static checks of docker-compose.yml, Dockerfile and .dockerignore (no Docker engine needed).

What an engine would tell us late (a typo'd subcommand, an env var the settings ignore, a
``depends_on`` on a missing service, a COPY of a path that moved) is checked here against the
project's own argparse parser and ``Settings`` model. ``docker compose config`` runs as well
when the compose plugin is installed; it is skipped otherwise.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

yaml = pytest.importorskip("yaml")

from elderwatch.cli import build_parser  # noqa: E402
from elderwatch.localkafka import KAFKA_VERSION  # noqa: E402
from elderwatch.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


# --------------------------------------------------------------------------- helpers


def _compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _is_elderwatch(service: dict) -> bool:
    image = str(service.get("image", ""))
    return "build" in service or image.split(":")[0].rsplit("/", 1)[-1] == "elderwatch"


def _elderwatch_services() -> dict[str, dict]:
    return {name: svc for name, svc in _services().items() if _is_elderwatch(svc)}


def _command_args(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        return list(_dockerfile_exec_form("CMD"))
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def _depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _volume_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax or long-syntax volume."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            parts = str(volume).split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _dockerfile_exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in _dockerfile_instructions() if kw == keyword]
    assert values, f"Dockerfile has no {keyword}"
    value = json.loads(values[-1])  # the last one wins; exec (JSON) form is required below
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} must be exec form"
    return value


def _dockerfile_copy_sources() -> list[list[str]]:
    """Source paths of each COPY/ADD from the build context (COPY --from=... excluded)."""
    copies = []
    for keyword, rest in _dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        if rest.startswith("["):
            parts = json.loads(rest)
        else:
            parts = shlex.split(rest)
        flags = [p for p in parts if p.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [p for p in parts if not p.startswith("--")]
        assert len(paths) >= 2, f"{keyword} {rest!r} needs a source and a destination"
        copies.append(paths[:-1])
    return copies


def _dockerignore_patterns() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ELDERWATCH_") or key == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)


# --------------------------------------------------------------------------- compose file


def test_compose_file_parses_with_the_expected_services():
    compose = _compose()
    assert isinstance(compose, dict)
    assert {"kafka", "topics", "worker", "simulate", "roster", "feed", "prometheus", "grafana"} <= set(compose["services"])
    assert set(_elderwatch_services()) == {"topics", "worker", "simulate", "roster", "feed"}


@pytest.mark.parametrize("name", ["topics", "worker", "simulate", "roster", "feed"])
def test_each_elderwatch_service_command_is_accepted_by_the_cli_parser(name):
    service = _services()[name]
    args = _command_args(service)
    assert args, f"{name}: empty command"
    assert args[0] != "elderwatch", f"{name}: the image's ENTRYPOINT is already elderwatch; command holds only its arguments"
    try:
        namespace = build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on bad arguments
        pytest.fail(f"{name}: `elderwatch {shlex.join(args)}` is rejected by elderwatch's argparse (exit {exc.code})")
    assert namespace.command == name  # each service is named after the subcommand it runs
    assert callable(namespace.func)


def test_topics_job_creates_the_topics_rather_than_listing_them():
    namespace = build_parser().parse_args(_command_args(_services()["topics"]))
    assert namespace.action == "create"


def test_dockerfile_default_command_is_the_worker_and_parses():
    args = _dockerfile_exec_form("CMD")
    assert args == ["worker"]
    assert build_parser().parse_args(args).command == "worker"


def test_elderwatch_is_the_dockerfile_entrypoint():
    assert _dockerfile_exec_form("ENTRYPOINT") == ["elderwatch"]


@pytest.mark.parametrize("name", ["topics", "worker", "simulate", "feed"])
def test_environment_names_are_settings_the_worker_reads(name, monkeypatch):
    known = {"KAFKA_BOOTSTRAP_SERVERS"} | {"ELDERWATCH_" + field.upper() for field in Settings.model_fields}
    env = _environment(_services()[name])
    unknown = sorted(set(env) - known)
    assert not unknown, f"{name}: {unknown} are not elderwatch settings (known: {sorted(known)})"
    # And the values validate: pydantic-settings reads exactly these variables.
    _clean_env(monkeypatch)
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    Settings()


def test_services_that_talk_to_kafka_use_the_compose_broker_plaintext_listener():
    services = _services()
    kafka_env = _environment(services["kafka"])
    plaintext = [l for l in kafka_env["KAFKA_LISTENERS"].split(",") if l.startswith("PLAINTEXT://")]
    assert len(plaintext) == 1
    port = plaintext[0].rsplit(":", 1)[1]
    for name in ("topics", "worker", "feed"):
        assert _environment(services[name]).get("KAFKA_BOOTSTRAP_SERVERS") == f"kafka:{port}", name
        assert "kafka" in _depends_on(services[name]) or any(
            "kafka" in _depends_on(services[d]) for d in _transitive_deps(name)
        ), f"{name} must (transitively) wait for kafka"


def _transitive_deps(name: str) -> set[str]:
    services = _services()
    seen: set[str] = set()
    todo = list(_depends_on(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(_depends_on(services[dep]))
    return seen


def test_worker_serves_health_and_metrics_outside_the_container():
    worker = _services()["worker"]
    env = _environment(worker)
    assert env.get("ELDERWATCH_WEB_HOST") == "0.0.0.0"
    port = env.get("ELDERWATCH_WEB_PORT") or str(Settings.model_fields["web_port"].default)
    published = [str(p) for p in worker.get("ports", [])]
    assert any(p.split(":")[-1].split("/")[0] == port for p in published), published
    healthcheck = " ".join(str(part) for part in worker["healthcheck"]["test"])
    assert f"localhost:{port}/ready" in healthcheck, "the feed waits for a worker that serves, not one still recovering"
    assert "curl" not in healthcheck and "wget" not in healthcheck, "python:3.11-slim has neither"
    exposed = " ".join(rest for kw, rest in _dockerfile_instructions() if kw == "EXPOSE").split()
    assert port in [e.split("/")[0] for e in exposed]


def test_depends_on_references_exist_and_conditions_make_sense():
    services = _services()
    for name, service in services.items():
        for dep, condition in _depends_on(service).items():
            assert dep in services, f"{name} depends on missing service {dep!r}"
            assert dep != name
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}, condition
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy but {dep} has no healthcheck"
            if condition == "service_completed_successfully":
                assert str(services[dep].get("restart", "no")) == "no", f"{dep} is a one-shot job: restart must be 'no'"
    for name in services:
        assert name not in _transitive_deps(name), f"dependency cycle through {name}"


def test_expected_startup_order():
    services = _services()
    assert _depends_on(services["topics"]) == {"kafka": "service_healthy"}
    # the worker reads the simulated households' time zones at start
    assert _depends_on(services["worker"]) == {"topics": "service_completed_successfully",
                                               "simulate": "service_completed_successfully"}
    assert _depends_on(services["roster"]) == {"topics": "service_completed_successfully",
                                               "simulate": "service_completed_successfully"}
    assert _depends_on(services["feed"]) == {"worker": "service_healthy", "simulate": "service_completed_successfully"}


def test_named_volumes_are_declared():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target in _volume_mounts(service):
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"
    assert {"simdata"} <= declared


def test_feed_reads_the_file_the_simulate_job_writes_through_the_shared_volume():
    services = _services()
    parser = build_parser()
    sim = parser.parse_args(_command_args(services["simulate"]))
    fed = parser.parse_args(_command_args(services["feed"]))
    out_dir = PurePosixPath(str(sim.out))
    feed_file = PurePosixPath(str(fed.file))
    assert feed_file.parent == out_dir
    # The simulator writes readings.csv (readings.csv.gz with --compress).
    assert feed_file.name == ("readings.csv.gz" if sim.compress else "readings.csv")
    assert (sim.households, sim.days, sim.seed) == (50, 35, 7)

    def volume_holding(service: dict, path: PurePosixPath) -> str:
        for source, target in _volume_mounts(service):
            if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
                return source
        pytest.fail(f"{path} is not on any volume of {service.get('command')}")

    assert volume_holding(services["simulate"], out_dir) == volume_holding(services["feed"], feed_file) == "simdata"
    # Same mount point on both sides, so the paths mean the same files.
    sim_targets = {t for s, t in _volume_mounts(services["simulate"]) if s == "simdata"}
    feed_targets = {t for s, t in _volume_mounts(services["feed"]) if s == "simdata"}
    assert sim_targets & feed_targets


def test_feed_speed_is_a_valid_replay_speed():
    from elderwatch.feed import parse_speed

    fed = build_parser().parse_args(_command_args(_services()["feed"]))
    assert fed.speed == "600x"
    assert parse_speed(fed.speed) == 600.0


def test_bind_mounts_are_paths_of_the_repository():
    for name, service in _services().items():
        for source, _target in _volume_mounts(service):
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repository"


# --------------------------------------------------------------------------- monitoring services


def _mount_target(service: dict, source: str) -> PurePosixPath:
    targets = [PurePosixPath(t) for s, t in _volume_mounts(service) if s.rstrip("/") == source]
    assert len(targets) == 1, f"{source} is mounted {len(targets)} times"
    return targets[0]


def _in_mount(service: dict, source: str, path: str) -> Path:
    """The repository file that ``path`` inside the container is, through the bind mount of ``source``."""
    relative = PurePosixPath(path).relative_to(_mount_target(service, source))
    return REPO / source / relative


@pytest.mark.parametrize("name, repository", [("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")])
def test_monitoring_images_are_pinned_to_a_version(name, repository):
    image = _services()[name]["image"]
    repo, _, tag = image.partition(":")
    assert repo == repository
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{image}: pin a release, never latest"


def test_prometheus_reads_the_repository_config_and_scrapes_the_worker():
    services = _services()
    prometheus = services["prometheus"]
    [config_flag] = [a for a in _command_args(prometheus) if a.startswith("--config.file=")]
    config_file = _in_mount(prometheus, "./ops/prometheus", config_flag.split("=", 1)[1])
    assert config_file == REPO / "ops" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        assert (config_file.parent / rule_file).exists(), rule_file
    worker_env = _environment(services["worker"])
    port = worker_env.get("ELDERWATCH_WEB_PORT") or str(Settings.model_fields["web_port"].default)
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"worker:{port}"]
    assert "worker" in _depends_on(prometheus)
    assert "9090" in [str(p).split(":")[-1] for p in prometheus["ports"]]


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard():
    services = _services()
    grafana = services["grafana"]
    assert _mount_target(grafana, "./ops/grafana/provisioning") == PurePosixPath("/etc/grafana/provisioning")
    datasources = yaml.safe_load((REPO / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    providers = yaml.safe_load((REPO / "ops/grafana/provisioning/dashboards/elderwatch.yml").read_text())
    [provider] = providers["providers"]
    folder = _in_mount(grafana, "./ops/grafana/dashboards", provider["options"]["path"])
    assert (folder / "elderwatch.json").exists()
    home = _environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _in_mount(grafana, "./ops/grafana/dashboards", home) == folder / "elderwatch.json"
    assert _depends_on(grafana) == {"prometheus": "service_healthy"}
    assert "3000" in [str(p).split(":")[-1] for p in grafana["ports"]]


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_monitoring_healthchecks_use_what_the_image_has(name):
    test = [str(part) for part in _services()[name]["healthcheck"]["test"]]
    assert test[:2] == ["CMD", "wget"], "both images are busybox/alpine based: wget, no curl"


# --------------------------------------------------------------------------- kafka service


def test_kafka_image_is_the_version_the_local_broker_uses():
    image = _services()["kafka"]["image"]
    repo, _, tag = image.partition(":")
    assert repo == "apache/kafka"
    assert tag == KAFKA_VERSION


def test_kafka_is_a_single_kraft_node_without_auto_topic_creation():
    env = _environment(_services()["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    listeners = dict(l.split("://", 1) for l in env["KAFKA_LISTENERS"].split(","))
    assert set(listeners) == {"PLAINTEXT", "CONTROLLER", "EXTERNAL"}
    assert listeners["PLAINTEXT"].endswith(":9092")
    assert listeners["CONTROLLER"].endswith(":9093")
    assert listeners["EXTERNAL"].endswith(":29092")
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    voter_id, _, voter_addr = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == node_id and voter_addr.endswith(":9093")
    advertised = dict(l.split("://", 1) for l in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["EXTERNAL"] == "localhost:29092"
    assert "CONTROLLER" not in advertised
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_kafka_publishes_the_external_listener_and_keeps_data_on_a_named_volume():
    kafka = _services()["kafka"]
    assert "29092:29092" in [str(p) for p in kafka["ports"]]
    log_dir = _environment(kafka).get("KAFKA_LOG_DIRS", "/var/lib/kafka/data")
    sources = {source for source, target in _volume_mounts(kafka) if target == log_dir}
    assert sources and sources <= set(_compose()["volumes"])


def test_kafka_healthcheck_asks_the_broker_for_its_api_versions():
    test = " ".join(str(p) for p in _services()["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in test


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_and_non_root_user():
    instructions = _dockerfile_instructions()
    assert [rest for kw, rest in instructions if kw == "FROM"][0].split()[0] == "python:3.11-slim"
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    runs = " ".join(rest for kw, rest in instructions if kw == "RUN")
    # the image installs the versions the worker checks at start (streams/recovery.py's VERIFIED_WITH)
    assert "pip install -c requirements.lock ." in runs


def test_dockerfile_copies_paths_that_exist():
    copies = _dockerfile_copy_sources()
    assert copies
    for sources in copies:
        literal = [s for s in sources if not _has_glob(s)]
        assert literal, f"COPY {sources}: a COPY of only globs fails when nothing matches"
        for src in literal:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        for pattern in (s for s in sources if _has_glob(s)):
            # Optional files (e.g. README.m[d]): fine if absent, but must stay inside the context.
            for match in glob.glob(str(REPO / pattern)):
                assert Path(match).resolve().is_relative_to(REPO)


def test_dockerfile_copies_every_package_pip_install_needs():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {PurePosixPath(s).parts[0] for sources in _dockerfile_copy_sources() for s in sources}
    assert "pyproject.toml" in copied
    for pattern in include:
        top = pattern.rstrip("*").rstrip(".")
        assert top in copied, f"pyproject includes {pattern} but the Dockerfile does not COPY {top}/"
    for required in ("schemas", "streams", "detectors", "dispatch", "elderwatch", "replay_data"):
        assert required in copied


def test_dockerignore_does_not_exclude_what_the_dockerfile_copies():
    patterns = [p for p in _dockerignore_patterns() if not p.startswith("!")]
    for sources in _dockerfile_copy_sources():
        for src in sources:
            name = src.rstrip("/")
            for pattern in patterns:
                assert not fnmatch.fnmatch(name, pattern.rstrip("/")), f".dockerignore pattern {pattern!r} excludes {src}"
    # And it keeps the virtualenv and VCS data out of the build context.
    assert {".git", ".venv"} <= set(patterns)


# --------------------------------------------------------------------------- docker compose config


def _compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.mark.skipif(not _compose_plugin_available(), reason="docker compose plugin not installed")
def test_docker_compose_config_validates_the_file():
    # `config` only parses and validates the model; it needs no engine.
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    if "Cannot connect to the Docker daemon" in result.stderr:
        pytest.skip("this docker compose needs an engine even for `config`")
    assert result.returncode == 0, result.stderr
