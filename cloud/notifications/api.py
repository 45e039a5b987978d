"""Notification REST API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from cloud.notifications.domain import InvalidField
from cloud.notifications.service import NotificationService
from cloud.notifications.views import (
    CreatedWebhookOut,
    FailedListOut,
    FailedOut,
    InboxOut,
    NotificationOut,
    PreferencesIO,
    TemplateIn,
    TemplateOut,
    TemplatesOut,
    WebhookIn,
    WebhooksOut,
)
from cloud.platform.identity import CurrentUser


def _service(request: Request) -> NotificationService:
    return request.app.state.notifications  # type: ignore[no-any-return]


Service = Annotated[NotificationService, Depends(_service)]
router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("", response_model=InboxOut)
async def inbox(user: CurrentUser, service: Service, unread: bool = False,
                limit: Annotated[int, Query(ge=1, le=200)] = 50) -> InboxOut:
    """The caller's in-app notifications, newest first, and how many are unread."""
    return await service.inbox(user, unread_only=unread, limit=limit)


@router.get("/preferences", response_model=PreferencesIO)
async def preferences(user: CurrentUser, service: Service) -> PreferencesIO:
    """The caller's channels per kind and quiet hours (in the account's time zone)."""
    return await service.preferences(user)


@router.put("/preferences", response_model=PreferencesIO)
async def set_preferences(user: CurrentUser, service: Service, given: PreferencesIO) -> PreferencesIO:
    """Replace the caller's preferences; critical kinds bypass the quiet hours."""
    return await service.set_preferences(user, given)


@router.get("/webhooks", response_model=WebhooksOut)
async def webhooks(user: CurrentUser, service: Service) -> WebhooksOut:
    """The caller's webhooks (without their secrets)."""
    return await service.webhooks(user)


@router.post("/webhooks", response_model=CreatedWebhookOut, status_code=201)
async def add_webhook(user: CurrentUser, service: Service, given: WebhookIn) -> CreatedWebhookOut:
    """Register a webhook for the caller's notifications; its signing secret is in this answer only. A URL that is
    not http(s), or in production points at a loopback, link-local or private address, is a 422 naming ``url``."""
    try:
        return await service.add_webhook(user, given)
    except InvalidField as exc:
        raise RequestValidationError([{"loc": ("body", exc.field), "msg": exc.message,
                                       "type": "value_error"}]) from None


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
                         service: Service) -> Response:
    """Remove one of the caller's webhooks (another's: 404)."""
    await service.delete_webhook(user, webhook_id)
    return Response(status_code=204)


@router.get("/templates", response_model=TemplatesOut)
async def templates(user: CurrentUser, service: Service) -> TemplatesOut:
    """Every template per kind and language, with the variables it may use (admins)."""
    return await service.templates(user)


@router.put("/templates/{kind}/{language}", response_model=TemplateOut)
async def set_template(kind: str, language: str, user: CurrentUser, service: Service,
                       given: TemplateIn) -> TemplateOut:
    """Replace a template (admins); a syntax error or an unknown variable is a 422 naming the line."""
    return await service.set_template(user, kind, language, given)


@router.get("/failed", response_model=FailedListOut)
async def failed(user: CurrentUser, service: Service,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> FailedListOut:
    """Dead-lettered notifications (operators: their sites'; admins: all)."""
    return await service.failed(user, limit)


@router.post("/failed/{notification_id}/retry", response_model=FailedOut)
async def retry(notification_id: str, user: CurrentUser, service: Service) -> FailedOut:
    """Queue a dead-lettered notification again, with fresh attempts (409 if it is not failed)."""
    return await service.retry(user, notification_id)


@router.post("/{notification_id}/read", response_model=NotificationOut)
async def read(notification_id: str, user: CurrentUser, service: Service) -> NotificationOut:
    """Mark one of the caller's in-app notifications read."""
    return await service.read(user, notification_id)
