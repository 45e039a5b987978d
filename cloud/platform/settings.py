"""Settings of a cloud process (pydantic-settings, prefix ``EVPARK_``).

Empty URLs select the embedded adapters: SQLite files, the in-process bus and cache.

Each registered service (:mod:`cloud.registry`) has a listen port and an upstream URL:
``EVPARK_<NAME>_PORT`` (default: its spec's port) and ``EVPARK_<NAME>_URL`` (default
``http://127.0.0.1:<port>``), read into :attr:`CloudSettings.ports` and :attr:`CloudSettings.urls`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EDGE_ACK_RETENTION_DAYS = 7.0
"""How long an edge keeps acknowledged envelopes to publish again (``[uplink] retention_days``, default of
``edge.store.outbox.Retention``); the cloud's inbox must remember their ids longer. A fleet whose site files keep
them longer needs ``EVPARK_INBOX_RETENTION_DAYS`` above that too."""


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
    mqtt_usernames: dict[str, str] = Field(default_factory=dict, description="broker user per service "
                                           "(EVPARK_<NAME>_MQTT_USERNAME; default mqtt_username). The production "
                                           "broker ties client ids to usernames: every service needs its own")
    mqtt_passwords: dict[str, SecretStr] = Field(default_factory=dict, description="its password "
                                                 "(EVPARK_<NAME>_MQTT_PASSWORD; default mqtt_password)")
    mqtt_tls: bool = False
    mqtt_resend: bool = Field(default=True, description="check each site's uplink for envelopes the broker lost "
                              "and ask the edge for them again (cloud/platform/delivery.py)")
    mqtt_gap_grace_seconds: float = Field(default=5.0, gt=0, le=600, description="a missing envelope is asked "
                                          "for after this long (envelopes of two topics may cross)")
    mqtt_topic_root: str = "evpark"
    ingest: Literal["direct", "partitioned"] = Field(
        default="direct", description="direct: each service reads its uplink categories from the MQTT broker "
        "(one replica per service); partitioned: `evpark ingest` forwards them to RabbitMQ, partitioned by "
        "site, and several replicas of a service share the partitions (needs RabbitMQ and PostgreSQL; "
        "cloud/platform/ingest.py)")
    ingest_partitions: int = Field(default=12, ge=1, le=256, description="uplink partitions per service; the "
                                   "same for the bridge and every replica")
    ingest_rebalance_seconds: float = Field(default=1.0, gt=0, le=60, description="how often a replica takes "
                                            "free partitions up to its share and gives back the rest")

    host: str = "127.0.0.1"
    ports: dict[str, int] = Field(default_factory=dict, description="listen port per service "
                                  "(EVPARK_<NAME>_PORT; default: the service's spec)")
    urls: dict[str, str] = Field(default_factory=dict, description="where the gateway finds each service "
                                 "(EVPARK_<NAME>_URL; default http://127.0.0.1:<port>)")

    # identity: tokens issued by the accounts service (or any OIDC issuer), verified by every service
    jwt_issuer: str = Field(default="evpark", description="the `iss` every access token must carry")
    jwt_audience: str = Field(default="evpark", description="the `aud` every access token must carry")
    jwks_url: str = Field(default="", description="the issuer's public keys; empty: the accounts service's "
                          "/.well-known/jwks.json")
    jwt_roles_claim: str = Field(default="roles", description="claim holding the roles (dots for nesting, e.g. "
                                 "realm_access.roles)")
    jwt_sites_claim: str = Field(default="sites", description="claim holding an operator's or technician's site ids")
    jwt_keys_dir: Path | None = Field(default=None, description="the accounts service's signing keys, one "
                                      "<kid>.pem (Ed25519, PKCS#8) each; empty: <data_dir>/jwt-keys, created on "
                                      "first start (development only)")
    jwt_active_kid: str = Field(default="", description="the key that signs new tokens; empty: the newest file")
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    login_failures: int = Field(default=5, ge=1, description="failed logins per account per window before it is "
                                "throttled")
    login_window_minutes: int = Field(default=15, ge=1)
    public_url: str = Field(default="http://127.0.0.1:8000", description="the gateway as users reach it (links in "
                            "e-mails)")

    # the gateway's limits (defaults: ../shared/design/GLOSSARY.md); README "Gateway"
    rate_limit_per_minute: int = Field(default=600, ge=1, description="reads (GET, HEAD) per caller per minute, at "
                                       "the gateway; a caller is its account, API key, or address when anonymous")
    rate_limit_writes_per_minute: int = Field(default=120, ge=1, description="writes (POST, PUT, PATCH, DELETE) per "
                                              "caller per minute")
    rate_limit_public_per_minute: int = Field(default=30, ge=1, description="requests to public routes (login, "
                                              "registration, key exchange) per client address per minute")
    trusted_proxies: list[str] = Field(default_factory=list, description="addresses or networks (CIDR) of the "
                                       "proxies whose X-Forwarded-For the gateway believes; empty: none")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API "
                                    "(CORS); empty: none")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="largest request body, at the gateway and "
                                "every service (413 above)")
    header_timeout_seconds: float = Field(default=10.0, gt=0, description="a client must send its request headers "
                                          "(and each part of its body) within this time")
    upstream_timeout_seconds: float = Field(default=10.0, gt=0, description="the gateway waits this long for a "
                                            "service's answer")
    command_timeout_seconds: float = Field(default=30.0, gt=0, description="... and this long for routes that "
                                           "wait for a charger (remote commands)")
    charging_low_power_seconds: float = Field(default=300.0, gt=0, le=86_400, description="charging: a session "
                                              "under 100 W this long (not held at 0 A) is energy finished")
    parking_tick_seconds: float = Field(default=5.0, gt=0, le=300, description="parking: how often no-shows, "
                                        "overstays and due ReserveNow / CancelReservation commands are looked for")
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures of a service after which the "
                                  "gateway stops calling it (503) ...")
    breaker_reset_seconds: float = Field(default=30.0, gt=0, description="... for this long, then tries one request "
                                         "(half-open)")
    inbox_retention_days: float = Field(default=14.0, description="inbox rows (the ids of consumed messages) are "
                                        "deleted after this many days; must be longer than the edges keep "
                                        "acknowledged envelopes to send again (EDGE_ACK_RETENTION_DAYS), so a "
                                        "re-sent envelope is still recognised (cloud/platform/retention.py)")
    log_level: str = "INFO"

    @field_validator("inbox_retention_days")
    @classmethod
    def _inbox_outlives_the_edge_retention(cls, days: float) -> float:
        if not days > EDGE_ACK_RETENTION_DAYS:
            raise ValueError(f"EVPARK_INBOX_RETENTION_DAYS must be longer than the {EDGE_ACK_RETENTION_DAYS:g} days "
                             "an edge keeps acknowledged envelopes to send again (a re-sent envelope whose inbox "
                             f"row is gone would be processed twice), not {days:g}")
        return days

    @model_validator(mode="before")
    @classmethod
    def _per_service_ports_and_urls(cls, data: Any) -> Any:
        """``<name>_port``/``<name>_url`` keywords, else ``EVPARK_<NAME>_PORT``/``_URL``, per registered service."""
        if not isinstance(data, dict):
            return data
        from cloud.registry import specs  # the registry imports the services' specs, not settings

        ports = dict(data.get("ports") or {})
        urls = dict(data.get("urls") or {})
        for spec in specs():
            for key, target, default in ((f"{spec.name}_port", ports, spec.port), (f"{spec.name}_url", urls, "")):
                value = data.pop(key, None)  # precedence: keyword, ports/urls mapping, environment, spec
                if value is None and spec.name not in target:
                    value = os.environ.get(f"EVPARK_{key.upper()}") or default
                if value is not None:
                    target[spec.name] = value
        data["ports"], data["urls"] = ports, urls
        return data

    @model_validator(mode="before")
    @classmethod
    def _per_service_mqtt_logins(cls, data: Any) -> Any:
        """``EVPARK_<NAME>_MQTT_USERNAME`` / ``_MQTT_PASSWORD`` per registered service, unless given."""
        if not isinstance(data, dict):
            return data
        from cloud.registry import specs

        usernames = dict(data.get("mqtt_usernames") or {})
        passwords = dict(data.get("mqtt_passwords") or {})
        for name in [*(spec.name for spec in specs()), "ingest"]:  # "ingest": the bridge (evpark ingest)
            for suffix, target in (("USERNAME", usernames), ("PASSWORD", passwords)):
                value = os.environ.get(f"EVPARK_{name.upper()}_MQTT_{suffix}")
                if value and name not in target:
                    target[name] = value
        data["mqtt_usernames"], data["mqtt_passwords"] = usernames, passwords
        return data

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> CloudSettings:
        if self.env == "production":
            problems = []
            if not self.database_url:
                problems.append("EVPARK_DATABASE_URL must point to PostgreSQL")
            if "EVPARK_API_KEYS" in os.environ:
                problems.append("EVPARK_API_KEYS is no longer read: callers log in (POST /auth/login), and machine "
                                "clients use API keys of their accounts (POST /accounts/{id}/api-keys); unset it")
            if not self.amqp_url:
                problems.append("EVPARK_AMQP_URL must point to RabbitMQ")
            if problems:
                raise ValueError("production settings refused: " + "; ".join(problems))
        if self.ingest == "partitioned":
            if not self.amqp_url:
                raise ValueError("EVPARK_INGEST=partitioned needs EVPARK_AMQP_URL (the partitions are RabbitMQ queues)")
            if not self.database_url.startswith("postgresql"):
                raise ValueError("EVPARK_INGEST=partitioned needs a PostgreSQL EVPARK_DATABASE_URL (replicas share "
                                 "the partitions through its advisory locks)")
        return self

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url.replace("{service}", service)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').as_posix()}"

    def mqtt_login(self, service: str) -> tuple[str | None, str | None]:
        """The broker username and password of ``service``: its own, else the shared ones."""
        password = self.mqtt_passwords.get(service) or self.mqtt_password
        return (self.mqtt_usernames.get(service) or self.mqtt_username,
                password.get_secret_value() if password else None)

    def jwks_endpoint(self) -> str:
        """The issuer's JWKS: ``EVPARK_JWKS_URL``, else the accounts service's (empty without one)."""
        if self.jwks_url:
            return self.jwks_url
        return f"{self.upstream_url('accounts')}/.well-known/jwks.json" if "accounts" in self.ports else ""

    def signing_keys_dir(self) -> Path:
        return self.jwt_keys_dir or self.data_dir / "jwt-keys"

    def port_of(self, service: str) -> int:
        try:
            return self.ports[service]
        except KeyError:
            raise KeyError(f"no service {service!r} in the registry (cloud/registry.py)") from None

    def upstream_url(self, service: str) -> str:
        explicit = self.urls.get(service, "")
        if explicit:
            return explicit.rstrip("/")
        return f"http://127.0.0.1:{self.port_of(service)}"
