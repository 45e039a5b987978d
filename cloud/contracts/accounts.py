"""Events of the accounts service, on the ``account.events`` exchange.

What notifications and analytics need to know about the people they serve: email, name,
language and time zone (recipients), roles and site scopes; and the links a user must receive
(password reset, email verification), which only the notification service delivers.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


class AccountFacts(EventBody):
    account_id: str
    email: str
    name: str
    language: str = Field(default="en", description="BCP 47 language tag for messages")
    time_zone: str = Field(default="UTC", description="IANA time zone for times shown to the person")
    roles: list[str] = Field(description="driver, operator, technician, admin")
    sites: list[str] = Field(default_factory=list, description="site ids an operator or technician acts on")
    email_verified: bool = False
    disabled: bool = False


@event("account.registered", "1.0", "A person registered (a driver) or an admin created an account.")
class AccountRegistered(AccountFacts):
    pass


@event("account.updated", "1.0", "An account's email, name, language, time zone, roles, scopes or state changed.")
class AccountUpdated(AccountFacts):
    pass


class LinkToSend(EventBody):
    account_id: str
    email: str
    name: str
    language: str = "en"
    url: str = Field(description="the single-use link to send; it carries the token")
    expires_at: AwareDatetime


@event("account.password_reset_requested", "1.0", "Someone asked to reset the password of an existing account.")
class PasswordResetRequested(LinkToSend):
    pass


@event("account.email_verification_requested", "1.0", "An account's email address must be verified.")
class EmailVerificationRequested(LinkToSend):
    pass
