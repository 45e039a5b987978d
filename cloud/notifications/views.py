"""What the notification API answers and takes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from cloud.notifications.domain import CHANNELS, KINDS


class NotificationOut(BaseModel):
    id: str
    kind: str
    channel: str
    title: str
    body: str
    site_id: str | None
    created_at: datetime
    read_at: datetime | None = None


class InboxOut(BaseModel):
    unread: int
    items: list[NotificationOut]


class FailedOut(BaseModel):
    id: str
    kind: str
    channel: str
    account_id: str | None
    site_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime


class FailedListOut(BaseModel):
    items: list[FailedOut]


class QuietHoursIn(BaseModel):
    start: str = Field(description="HH:MM in the driver's time zone")
    end: str = Field(description="HH:MM; before start: the quiet hours span midnight")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("must be HH:MM (00:00-23:59)")
        return value


class BounceOut(BaseModel):
    address: str
    reason: str
    since: datetime


class PreferencesIO(BaseModel):
    quiet_hours: QuietHoursIn | None = None
    channels: dict[str, dict[str, bool]] = Field(default_factory=dict, description="kind -> channel -> on/off "
                                                 "(absent: on)")
    time_zone: str | None = Field(default=None, description="the time zone the quiet hours are in (read only: the "
                                  "account's)")
    email_bounce: BounceOut | None = Field(default=None, description="read only: the account's e-mail bounced, so "
                                           "no e-mail is sent to it (in-app still is) until the account's e-mail "
                                           "changes")

    @field_validator("channels")
    @classmethod
    def _known(cls, value: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
        for kind, channels in value.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            for channel in channels:
                if channel not in CHANNELS:
                    raise ValueError(f"{kind}: unknown channel {channel!r}")
        return value


class TemplateIn(BaseModel):
    subject: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, max_length=20_000)
    html: str | None = Field(default=None, max_length=100_000)


class TemplateOut(TemplateIn):
    kind: str
    language: Literal["en", "de"]
    variables: list[str]
    custom: bool


class TemplatesOut(BaseModel):
    items: list[TemplateOut]


class WebhookIn(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL that receives the caller's "
                     "notifications, signed; in production not a loopback, link-local or private address")


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    created_at: datetime


class CreatedWebhookOut(WebhookOut):
    secret: str = Field(description="signs every delivery (Evpark-Signature); shown only now")


class WebhooksOut(BaseModel):
    items: list[WebhookOut]
