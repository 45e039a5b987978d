"""Who is asking, as every service's use cases and domain rules see it (pure: no token handling).

The platform (:mod:`cloud.platform.identity`) turns a verified access token into a
:class:`Principal`; domains decide with it what the caller may see and do. Roles: ``driver``
(owns vehicles and what follows them), ``operator`` and ``technician`` (scoped to site ids),
``admin`` (everything).

Exception tree::

    Unauthorized        401  no token, or one that is expired, forged, of another issuer or audience
    Forbidden           403  a valid token whose roles never allow the action

A resource that exists but is not the caller's answers 404 (:class:`cloud.contracts.errors.NotFound`),
never 403: the answer must not tell that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

DRIVER = "driver"
OPERATOR = "operator"
TECHNICIAN = "technician"
ADMIN = "admin"
ROLES = (DRIVER, OPERATOR, TECHNICIAN, ADMIN)
SITE_SCOPED = (OPERATOR, TECHNICIAN)


class Unauthorized(Exception):
    """No valid token: answered 401 with ``WWW-Authenticate: Bearer``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(Exception):
    """A valid token whose roles never allow this action: answered 403."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    subject: str
    """The account id (``sub``)."""
    roles: frozenset[str]
    sites: frozenset[str] = frozenset()
    """Site ids an operator or technician acts on."""
    email_verified: bool = False
    name: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_driver(self) -> bool:
        return DRIVER in self.roles

    def operates(self, site_id: str) -> bool:
        """An admin, or an operator or technician scoped to ``site_id``."""
        return self.is_admin or (bool(self.roles & {OPERATOR, TECHNICIAN}) and site_id in self.sites)

    def manages(self, site_id: str) -> bool:
        """An admin, or an operator (not a technician) scoped to ``site_id``."""
        return self.is_admin or (OPERATOR in self.roles and site_id in self.sites)


