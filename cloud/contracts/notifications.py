"""Events of the notification service, on the ``notification.events`` exchange."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event

Channel = Literal["email", "webhook", "in_app", "sms", "push"]


class NotificationFacts(EventBody):
    notification_id: str
    account_id: str | None = Field(default=None, description="the recipient's account; null for a webhook or an "
                                   "operator alert to a deployment-wide address")
    channel: Channel
    kind: str = Field(description="what the message is about: the event name that caused it, e.g. "
                      "charging.energy_finished, or reservation.reminder")
    source_event_id: str | None = Field(default=None, description="the event that caused it")
    attempts: int = Field(ge=1)


@event("notification.sent", "1.0", "A notification was delivered on its channel.")
class NotificationSent(NotificationFacts):
    sent_at: AwareDatetime


@event("notification.failed", "1.0", "A notification could not be delivered after its last attempt "
       "(dead-lettered) or its address bounced.")
class NotificationFailed(NotificationFacts):
    reason: str
    failed_at: AwareDatetime
