"""Domain errors and their HTTP mapping (RFC 9457 problem details).

Exception tree::

    DomainError            422  a rule of the domain refused the request
    ├── NotFound           404  the named thing does not exist
    └── Conflict           409  it exists already, or is in a state that forbids this
"""

from __future__ import annotations


class DomainError(Exception):
    status = 422
    title = "Request refused"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or type(self).__name__


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
