"""Notifications: the right message, once, on the channel the driver chose (e-mail, signed webhooks,
in-app, SMS/push through apprise), from the parking, charging, payment and account events."""

from pathlib import Path

from cloud.contracts.accounts import (
    AccountRegistered,
    AccountUpdated,
    EmailVerificationRequested,
    PasswordResetRequested,
)
from cloud.contracts.charging import (
    ChargerFaulted,
    ChargerOffline,
    ChargingAnomaly,
    ChargingCompleted,
    ChargingFailed,
    ChargingStarted,
    EnergyFinished,
)
from cloud.contracts.notifications import NotificationFailed, NotificationSent
from cloud.contracts.parking import Cancelled, NoShow, Overstay, Released, Reserved, SiteOffline
from cloud.contracts.payments import InvoiceIssued, PaymentCompleted, PaymentFailed, TariffChanged
from cloud.platform.spec import ServiceSpec

CONSUMED = (
    Reserved, Cancelled, NoShow, Released, Overstay, SiteOffline,
    ChargingStarted, ChargingCompleted, ChargingFailed, EnergyFinished, ChargerFaulted, ChargerOffline,
    ChargingAnomaly,
    PaymentCompleted, PaymentFailed, InvoiceIssued, TariffChanged,
    AccountRegistered, AccountUpdated, PasswordResetRequested, EmailVerificationRequested,
)

SPEC = ServiceSpec(
    name="notifications",
    port=8106,
    app="cloud.notifications.app:build_app",
    description="Notifications: e-mail, signed webhooks, in-app and SMS/push, once per event, recipient and channel.",
    prefixes=("/notifications",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(NotificationSent, NotificationFailed),
    consumes=CONSUMED,
)
