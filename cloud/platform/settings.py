"""Settings of a cloud process (pydantic-settings, prefix ``EVPARK_``).

Empty URLs select the embedded adapters: SQLite files, the in-process bus and cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVPARK_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".evpark")

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; '{service}' is replaced by the service name. Empty: SQLite file "
        "<data_dir>/<service>.db",
    )
    amqp_url: str = Field(default="", description="RabbitMQ URL; empty: in-process event bus")
    redis_url: str = Field(default="", description="Redis URL; empty: in-process cache")
    cache_prefix: str = "evpark:"
    migrate_on_start: bool = Field(default=True, description="run migrations when a service starts; turn off "
                                   "where `evpark migrate` runs as a separate job")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_topic_root: str = "evpark"

    host: str = "127.0.0.1"
    gateway_port: int = 8000
    charging_port: int = 8101
    vehicles_port: int = 8102
    parking_port: int = 8103
    charging_url: str = ""
    vehicles_url: str = ""
    parking_url: str = ""

    rate_limit_per_minute: int = Field(default=600, ge=1, description="per client address, at the gateway")
    api_keys: SecretStr = Field(default=SecretStr(""), description="comma-separated gateway API keys; "
                                "empty: no authentication (embedded default only)")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> CloudSettings:
        if self.env == "production":
            problems = []
            if not self.database_url:
                problems.append("EVPARK_DATABASE_URL must point to PostgreSQL")
            if not self.api_keys.get_secret_value().strip():
                problems.append("EVPARK_API_KEYS must list the gateway's API keys")
            if not self.amqp_url:
                problems.append("EVPARK_AMQP_URL must point to RabbitMQ")
            if problems:
                raise ValueError("production settings refused: " + "; ".join(problems))
        return self

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url.replace("{service}", service)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').as_posix()}"

    def upstream_url(self, service: str) -> str:
        explicit = {"charging": self.charging_url, "vehicles": self.vehicles_url, "parking": self.parking_url}[service]
        if explicit:
            return explicit.rstrip("/")
        port = {"charging": self.charging_port, "vehicles": self.vehicles_port, "parking": self.parking_port}[service]
        return f"http://127.0.0.1:{port}"
