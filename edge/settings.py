"""Settings of the edge agent (pydantic-settings, prefix ``EVPARK_EDGE_``).

Sources, strongest first: constructor arguments, environment variables, the site file given
to :meth:`EdgeSettings.from_toml`, the defaults below.

The site file is read by one loader, :func:`read_site_file` (pydantic-settings' TOML source); the
edge settings and the site's hardware tables (:mod:`edge.siteconfig`) are both taken from what it read.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mqtt.topics import validate_site_id, validate_topic_root

ENV_PREFIX = "EVPARK_EDGE_"
ADMIN_TOKEN_MIN = 24
"""Characters an admin token needs off loopback (``openssl rand -hex 32`` gives 64)."""
SITE_FILE_TABLES = frozenset({"bays", "sensors", "power", "uplink"})


class EdgeConfigError(ValueError):
    """The edge cannot start with this configuration; the message names the file and field."""


def _package_version() -> str:
    try:
        return metadata.version("evpark")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    site_id: str = Field(default="demo-site", description="one MQTT topic level; unique per site")
    data_dir: Path = Field(default=Path(".evpark/edge"), description="where edge.db lives")
    log_level: str = "INFO"

    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = Field(default=9000, ge=0, le=65535, description="0 picks a free port")
    heartbeat_interval: int = Field(default=300, ge=1, description="seconds, sent in BootNotification")
    sessions_report_every: float = Field(default=300.0, gt=0, le=3600, description=(
        "seconds between two session.open reports: the cloud closes within about this long a session whose "
        "stop it never got"))
    accept_unknown_chargers: bool = Field(
        default=False,
        description="register a charger id seen for the first time; when False it gets HTTP 404",
    )
    unknown_chargers_pending: bool = Field(
        default=False,
        description="with accept_unknown_chargers: a new charger boots as Pending until an operator accepts it",
    )
    offline_accept_unknown_id_tags: bool = Field(
        default=False,
        description="while the cloud link is down, authorize idTags missing from the local list (else Invalid)",
    )
    ocpp_ping_interval: float = Field(default=20.0, ge=0, description="seconds between WebSocket pings; 0: none")
    ocpp_ping_timeout: float = Field(default=20.0, gt=0, description="seconds to wait for a pong before closing")
    heartbeat_deadline: float | None = Field(
        default=None, gt=0,
        description="seconds without any message after which a charger is closed and reported offline "
                    "(default 2 * heartbeat_interval + 60)",
    )
    charger_call_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a charger's answer")
    ocpp_tls_cert: Path | None = Field(default=None, description="PEM chain: serve wss:// (Security Profile 2)")
    ocpp_tls_key: Path | None = Field(default=None, description="PEM private key of ocpp_tls_cert")
    ocpp_tls_client_ca: Path | None = Field(default=None, description=(
        "PEM CA certificate(s) that sign the chargers' client certificates (Security Profile 3); needs "
        "ocpp_tls_cert"))
    min_security_profile: int = Field(default=0, ge=0, le=3, description=(
        "chargers below this OCPP Security Profile get HTTP 401 (production: at least 1, so no charger id "
        "can be taken over by a connection without credentials)"))

    admin_enabled: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=9001, ge=0, le=65535, description="0 picks a free port")
    admin_token: SecretStr | None = Field(
        default=None, description=f"bearer token of the admin API, at least {ADMIN_TOKEN_MIN} characters; "
                                  "required unless it binds to loopback")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_topic_root: str = "evpark"
    mqtt_tls: bool = False
    mqtt_keepalive: int = Field(default=30, ge=2, le=300)
    """Seconds between MQTT pings: the broker publishes the edge's last will ("offline, lost") at
    most 1.5 times this after the edge's last packet when the link dies silently."""
    mqtt_high_water_every: float = Field(default=60.0, gt=0, le=3600)
    """Seconds between two ``site.high_water`` reports (the cloud learns of a lost tail from them)."""

    edge_version: str = Field(default_factory=_package_version)

    @field_validator("site_id")
    @classmethod
    def _valid_site_id(cls, value: str) -> str:
        return validate_site_id(value)

    @field_validator("mqtt_topic_root")
    @classmethod
    def _valid_topic_root(cls, value: str) -> str:
        return validate_topic_root(value)

    @model_validator(mode="after")
    def _admin_token_off_loopback(self) -> EdgeSettings:
        token = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        if self.admin_enabled and not _loopback(self.admin_host):
            if not token.strip():
                raise ValueError(f"admin_token (EVPARK_EDGE_ADMIN_TOKEN) is required when the admin API binds to "
                                 f"{self.admin_host!r}, which is not a loopback address; an empty token is none")
            if len(token) < ADMIN_TOKEN_MIN:
                raise ValueError(f"admin_token (EVPARK_EDGE_ADMIN_TOKEN) has {len(token)} characters; it needs at "
                                 f"least {ADMIN_TOKEN_MIN} when the admin API binds to {self.admin_host!r} "
                                 "(e.g. openssl rand -hex 32)")
        if (self.ocpp_tls_cert is None) != (self.ocpp_tls_key is None):
            raise ValueError("ocpp_tls_cert and ocpp_tls_key go together")
        if self.ocpp_tls_client_ca is not None and self.ocpp_tls_cert is None:
            raise ValueError("ocpp_tls_client_ca (Security Profile 3) needs ocpp_tls_cert and ocpp_tls_key: client "
                             "certificates are asked for over TLS only")
        return self

    @property
    def admin_secret(self) -> str | None:
        """The admin API's token; None (no authentication, loopback only) when unset or empty."""
        token = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        return token if token.strip() else None

    @property
    def offline_after(self) -> float:
        """Seconds of silence after which a charger is considered offline."""
        return self.heartbeat_deadline or 2 * self.heartbeat_interval + 60

    @property
    def database_path(self) -> Path:
        return self.data_dir / "edge.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file sits below the environment: an operator can override one key of a
        # site.toml with EVPARK_EDGE_<KEY> without editing the file.
        site_file = _SITE_FILE.get()
        toml = () if site_file is None else (site_file.source,)
        return (init_settings, env_settings, dotenv_settings, *toml, file_secret_settings)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> EdgeSettings:
        """Settings from a TOML file of top-level keys named like the fields above.

        Environment variables still override the file. Raises :class:`EdgeConfigError`
        naming the file and the field when the file is missing, not TOML, has an unknown
        key or an invalid value.
        """
        try:
            site_file = read_site_file(path)
        except SiteFileError as exc:
            raise settings_error(exc) from exc.__cause__
        return cls.from_site_file(site_file, **overrides)

    @classmethod
    def from_site_file(cls, site_file: SiteFile, **overrides: Any) -> EdgeSettings:
        """Settings from a site file already read (see :meth:`from_toml`)."""
        # The hardware tables of a site file belong to edge.siteconfig (same file, same read).
        data = {key: value for key, value in site_file.data.items() if key not in SITE_FILE_TABLES}
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise EdgeConfigError(
                f"{site_file.path}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(cls.model_fields))}"
            )
        token = _SITE_FILE.set(site_file)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise EdgeConfigError(_describe(site_file.path, exc)) from exc
        finally:
            _SITE_FILE.reset(token)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the site file -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteFile:
    """A site file, read once by pydantic-settings' TOML source."""

    path: Path
    source: TomlConfigSettingsSource

    @property
    def data(self) -> dict[str, Any]:
        """The file's TOML document: top-level edge settings and the site's tables."""
        return self.source.toml_data


ReadProblem = Literal["missing", "unreadable", "not_toml"]
_READ_PROBLEMS: dict[ReadProblem, str] = {
    "missing": "edge settings file not found", "unreadable": "cannot read edge settings",
    "not_toml": "not valid TOML"}


class SiteFileError(ValueError):
    """The site file is missing, cannot be read or is not TOML (``problem``; ``detail`` says more)."""

    MESSAGES: dict[ReadProblem, str] = {
        "missing": "site file not found", "unreadable": "cannot read the site file", "not_toml": "not valid TOML"}

    def __init__(self, path: Path, problem: ReadProblem, cause: Exception | None = None) -> None:
        self.path = path
        self.problem = problem
        self.detail = f": {cause}" if cause is not None else ""
        super().__init__(f"{path}: {self.MESSAGES[problem]}{self.detail}")


def settings_error(exc: SiteFileError) -> EdgeConfigError:
    """A site file that could not be read, said as the edge settings say it."""
    return EdgeConfigError(f"{exc.path}: {_READ_PROBLEMS[exc.problem]}{exc.detail}")


def read_site_file(path: str | os.PathLike[str]) -> SiteFile:
    """Read and parse a site file (the one TOML loader of the edge); raises :class:`SiteFileError`."""
    file = Path(path)
    if not file.exists():  # the TOML source would read nothing, silently
        raise SiteFileError(file, "missing")
    if not file.is_file():
        cause = IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(file))
        raise SiteFileError(file, "unreadable", cause) from cause
    try:
        source = TomlConfigSettingsSource(EdgeSettings, toml_file=file)
    except tomllib.TOMLDecodeError as exc:
        raise SiteFileError(file, "not_toml", exc) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteFileError(file, "unreadable", exc) from exc
    return SiteFile(file, source)


_SITE_FILE: ContextVar[SiteFile | None] = ContextVar("edge_site_file", default=None)
"""The site file being loaded by ``from_site_file`` (none otherwise)."""


def _describe(file: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "<settings>"
        source = ""
        env_name = f"{ENV_PREFIX}{field.upper()}"
        if env_name in os.environ:
            source = f" (set by environment variable {env_name})"
        problems.append(f"{field}{source}: {error['msg']}")
    return f"{file}: invalid edge settings: " + "; ".join(problems)
