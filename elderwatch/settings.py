"""All configuration, read once from the environment at the entry point.

Nothing else in elderwatch reads environment variables (the local test broker's
``KAFKA_BOOTSTRAP_SERVERS`` check in ``elderwatch.localkafka`` is the one exception).
Every setting is ``ELDERWATCH_<NAME>``; the broker list also answers to the usual
``KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.ingest import IngestLimits


def _is_loopback(server: str) -> bool:
    """``host:port`` (``[v6]:port`` too) names this machine?"""
    import ipaddress

    host = server.strip().rsplit(":", 1)[0] if server.strip().count(":") == 1 or "]" in server else server.strip()
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Secrets seen in examples and the demo: refused in production.
DEFAULT_SECRETS = frozenset({"change-me", "changeme", "secret", "development", "elderwatch-demo-secret-key-not-for-production"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELDERWATCH_", frozen=True, extra="ignore")

    environment: Literal["development", "production"] = "development"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("ELDERWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    app_id: str = Field(default="elderwatch", description="Faust application id: consumer group and prefix of state topics.")
    topic_prefix: str = Field(default="", description="Prefixed to every topic name, e.g. 'staging.'.")
    partitions: int = Field(default=4, ge=1, description="Partitions of the keyed topics; fixes how far a deployment can scale out.")
    replication_factor: int = Field(default=1, ge=1)
    data_dir: Path = Field(default=Path("/tmp/elderwatch-worker"), description="Faust's local state directory.")
    consumer_session_timeout_s: float = Field(default=60.0, ge=6, le=600, description="How long the group waits for a "
                                              "silent worker (killed, paused) before its partitions move: bounds the "
                                              "pause after a crash (faust's broker_session_timeout).")
    broker_wait_s: float = Field(default=300.0, ge=0, description="How long a starting worker waits for Kafka to "
                                 "answer (retrying, one log line per try) before it exits 1: a worker started "
                                 "before its broker, or during a broker restart, waits instead of crashing.")
    producer_linger_ms: int = Field(default=5, ge=0, le=1000, description="How long the producer waits to fill a "
                                    "batch (faust's producer_linger): a few ms turn one request per message into one "
                                    "per batch; bounds the latency it adds.")
    producer_max_batch_size: int = Field(default=256 * 1024, ge=1024, description="Bytes per producer batch "
                                         "(per partition): a changelog batch holds hundreds of ~4 KB states.")
    producer_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = Field(
        default="none", description="Producer compression. 'none' on the broker's own machine or a fast LAN (it "
        "costs the worker CPU); lz4/zstd/snappy need their Python package installed, gzip does not.")
    commit_interval_s: float = Field(default=30.0, gt=0, le=300, description="How often the readings loop stores the "
                                     "states its readings changed and commits their offsets: a household's state is "
                                     "written once per interval however many readings it had (Kafka Streams' "
                                     "commit.interval.ms). A crash repeats up to this much input, never loses any.")
    max_pending_states: int = Field(default=16_384, ge=1, description="Start a checkpoint sooner once this many "
                                    "households' states wait, and store the rest of one in progress at once past "
                                    "twice as many: bounds the monitors held open until stored, beside the cache's.")
    checkpoint_slice: int = Field(default=500, ge=1, description="Households stored between two batches while a "
                                  "checkpoint is in progress. Bounds the pause a checkpoint makes in reading (a "
                                  "state dump is ~0.2-0.4 ms: 500 households ~0.1-0.2 s) where storing every "
                                  "household at once stopped it for seconds.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535, description="Metrics (/metrics) and health (/health).")
    # Ingest
    max_future_s: int = Field(default=3600, ge=0, description="How far ahead of the ingest clock a ts may be (clock skew).")
    dedup_horizon_h: float = Field(default=48.0, gt=0, description="Duplicates are recognised this far back per series.")
    max_water_litres_per_hour: float = Field(default=3600.0, gt=0)
    max_electricity_kwh_per_hour: float = Field(default=60.0, gt=0)
    water_readback_tolerance_litres: float = Field(default=500.0, ge=0)
    electricity_readback_tolerance_kwh: float = Field(default=5.0, ge=0)
    # Detect
    default_timezone: str = Field(default="UTC", description="IANA zone of a household not listed in households_file.")
    households_file: Path | None = Field(default=None, description="households.csv (its timezone column); read once at start.")
    detection_config: Path | None = Field(default=None, description="detection.toml from `elderwatch tune`: sensitivity "
                                                                   "per kind and warm-up; read once at start.")
    detect_cache_size: int = Field(default=16384, ge=0, description="Live household monitors the detect stage keeps "
                                   "in memory per worker, ~16 KiB each (a miss loads the stored state: ~0.3 ms). At least the "
                                   "households a worker holds, memory permitting (bench/results/detect_speed.md).")
    migrate_pickled_state: bool = Field(default=False, description="Load detector states stored as pickles by "
                                        "earlier versions (only our state classes, by an allow-list), re-saved as JSON. "
                                        "Off: such a household counts as unreadable and relearns.")
    # Tickets
    ticket_timer_interval_s: float = Field(default=10.0, gt=0, description="How often deadlines are checked.")
    ack_timeout_high_min: float = Field(default=15.0, gt=0, description="Minutes a high-severity dispatch waits for an acknowledgement before escalating.")
    ack_timeout_medium_min: float = Field(default=60.0, gt=0)
    ack_timeout_low_min: float = Field(default=480.0, gt=0)
    handle_timeout_high_min: float = Field(default=60.0, gt=0, description="Minutes an acknowledged high-severity ticket may stay unhandled before it re-alerts.")
    handle_timeout_medium_min: float = Field(default=240.0, gt=0)
    handle_timeout_low_min: float = Field(default=1440.0, gt=0)
    feedback_timeout_min: float = Field(default=1440.0, gt=0, description="Minutes after handling before a missing outcome is reminded.")
    duty_desk: str = Field(default="duty-desk", description="Staff id that gets tickets of households missing from the roster.")
    data_quality_desk: str = Field(default="data-quality-desk", description="Staff id (at the utility) that gets meter_offline tickets.")
    contact_first: dict[str, str] = Field(default_factory=dict, description="community -> staff id of the desk that phones the "
                                          "household's emergency contact before a visit is dispatched (JSON).")
    staff_tokens_file: Path | None = Field(default=None, description="JSON {token: staff_id} for the staff API; "
                                           "without it (development only) the X-Staff-Id header is trusted.")
    users_file: Path | None = Field(default=None, description="users.json from `elderwatch users add`: console sign-in, "
                                    "roles and API tokens (staff, supervisor, operator, utility); re-read when it changes.")
    secret_key: str | None = Field(default=None, description="Signs console session cookies and CSRF tokens (32+ "
                                   "characters). Development without one: a random key per start (sessions end at restart).")
    public_url: str = Field(default="http://127.0.0.1:6066", description="Where staff reach the console; links in "
                            "notifications start with it.")
    channels_file: Path | None = Field(default=None, description="channels.json: which channel (webhook, WeCom, DingTalk, "
                                       "e-mail) tells each staff member or community; none: the webhook for everyone.")
    ingest_max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="POST /api/v1/readings: largest body "
                                       "(after gzip decompression too).")
    ingest_rate_per_min: int = Field(default=120, gt=0, description="POST /api/v1/readings: requests per minute per utility token.")
    signin_attempts_per_min: int = Field(default=5, gt=0, description="Failed sign-ins per minute per user id and per address.")
    webhook_url: str | None = Field(default=None, description="Where notifications are POSTed (JSON); none: counted, not sent.")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_max_backoff_s: float = Field(default=60.0, gt=0, description="Longest wait between retries of a failing webhook.")
    clock_offset_file: Path | None = Field(default=None, description="Development and tests only: a file holding seconds "
                                           "added to the wall clock, to make deadlines pass without waiting.")

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        from schemas.households import check_timezone

        return check_timezone(name)

    @model_validator(mode="after")
    def _safe_for_production(self) -> "Settings":
        if self.environment == "production":
            if self.replication_factor < 3:
                raise ValueError("replication_factor below 3 loses tickets and state when one broker fails; "
                                 "set ELDERWATCH_REPLICATION_FACTOR=3 (or run ELDERWATCH_ENVIRONMENT=development)")
            if any(_is_loopback(server) for server in self.kafka_bootstrap_servers.split(",")):
                raise ValueError("production needs a real Kafka cluster, not a loopback address")
            if self.staff_tokens_file is None and self.users_file is None:
                raise ValueError("production needs ELDERWATCH_USERS_FILE (or ELDERWATCH_STAFF_TOKENS_FILE): without one "
                                 "the development X-Staff-Id header would let anyone act as any staff member")
            if not self.secret_key or len(self.secret_key) < 32 or self.secret_key in DEFAULT_SECRETS:
                raise ValueError("production needs ELDERWATCH_SECRET_KEY: 32 or more random characters, not an example value "
                                 "(it signs session cookies)")
            if not self.public_url.startswith("https://"):
                raise ValueError("production serves the console over HTTPS: ELDERWATCH_PUBLIC_URL must start with https:// "
                                 "(session cookies are Secure)")
            if self.clock_offset_file is not None:
                raise ValueError("ELDERWATCH_CLOCK_OFFSET_FILE moves the clock: for tests only, never in production")
        return self

    @property
    def trusts_staff_header(self) -> bool:
        """Development without users or tokens: the staff API takes ``X-Staff-Id`` at its word."""
        return self.environment == "development" and self.users_file is None and self.staff_tokens_file is None

    @property
    def max_future(self) -> timedelta:
        return timedelta(seconds=self.max_future_s)

    def ticket_policy(self):
        from dispatch.tickets import Policy

        minutes = lambda m: timedelta(minutes=m)  # noqa: E731
        return Policy(
            ack_timeout={"high": minutes(self.ack_timeout_high_min), "medium": minutes(self.ack_timeout_medium_min),
                         "low": minutes(self.ack_timeout_low_min), "info": minutes(self.ack_timeout_low_min * 3)},
            handle_timeout={"high": minutes(self.handle_timeout_high_min), "medium": minutes(self.handle_timeout_medium_min),
                            "low": minutes(self.handle_timeout_low_min), "info": minutes(self.handle_timeout_low_min * 3)},
            feedback_timeout=minutes(self.feedback_timeout_min))

    def ingest_limits(self) -> IngestLimits:
        from schemas.readings import Meter

        return IngestLimits(
            dedup_horizon=timedelta(hours=self.dedup_horizon_h),
            max_per_hour={Meter.WATER: self.max_water_litres_per_hour, Meter.ELECTRICITY: self.max_electricity_kwh_per_hour},
            readback_tolerance={Meter.WATER: self.water_readback_tolerance_litres,
                                Meter.ELECTRICITY: self.electricity_readback_tolerance_kwh},
        )
