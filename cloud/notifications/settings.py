"""Settings of the notification service (``EVPARK_NOTIFICATIONS_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVPARK_NOTIFICATIONS_", extra="ignore")

    smtp_host: str = Field(default="", description="SMTP server; empty: e-mail is written to files in "
                           "<data_dir>/mail (embedded default)")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "EV Park <no-reply@evpark.local>"
    message_id_domain: str = "evpark.local"
    webhook_urls: list[str] = Field(default_factory=list, description="endpoints that receive operator alerts, "
                                    "signed (header Evpark-Signature); in production none may point at a loopback, "
                                    "link-local or private address (the service refuses to start)")
    webhook_secrets: list[SecretStr] = Field(default_factory=list, description="active signing secrets; every one "
                                             "signs (v1=… each), so a receiver can rotate")
    apprise_urls: list[str] = Field(default_factory=list, description="apprise URLs (SMS/push) that receive "
                                    "operator alerts")
    max_attempts: int = Field(default=8, ge=1, le=50, description="delivery attempts before the dead letter")
    retry_base_seconds: float = Field(default=675.0, gt=0, description="first retry delay; doubled per attempt, "
                                      "jittered ±25 % (8 attempts: about 24 h)")
    poll_seconds: float = Field(default=1.0, gt=0, le=60, description="how often the queue is looked at")
    lease_seconds: float = Field(default=60.0, gt=0, description="an attempt not recorded after this long (the "
                                 "service died mid-delivery) is made again, with the same Message-ID")
    concurrency: int = Field(default=4, ge=1, le=64, description="notifications sent at once (each in flight may be "
                             "repeated once after a crash)")
    send_timeout_seconds: float = Field(default=15.0, gt=0)
    debounce_seconds: float = Field(default=120.0, ge=0, description="one operator alert per charger/site and kind "
                                    "within this window (a flapping charger is one alert)")
    reminder_minutes: int = Field(default=15, ge=1, description="'your reservation starts in N minutes'")
