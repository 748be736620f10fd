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
        return self

    @property
    def max_future(self) -> timedelta:
        return timedelta(seconds=self.max_future_s)

    def ingest_limits(self) -> IngestLimits:
        from schemas.readings import Meter

        return IngestLimits(
            dedup_horizon=timedelta(hours=self.dedup_horizon_h),
            max_per_hour={Meter.WATER: self.max_water_litres_per_hour, Meter.ELECTRICITY: self.max_electricity_kwh_per_hour},
            readback_tolerance={Meter.WATER: self.water_readback_tolerance_litres,
                                Meter.ELECTRICITY: self.electricity_readback_tolerance_kwh},
        )
