"""Mosquitto's password file and ACL for evpark: who may log in, and which topics each user may use.

Users (``mqtt/mosquitto.conf`` sets ``use_username_as_clientid``, so a client id *is* its username
and nobody can take another user's session):

* every site is the user named by its site id, made by ``evpark sites add`` (this module writes its
  password-file line and its ACL block: publish under its own ``up/`` and its status topic, read its
  own ``down/``; nothing else);
* every cloud service that reads MQTT is the user ``evpark-<service>`` (:func:`cloud_user`), with
  read on the uplink categories its spec names (and ``site``, which every MQTT link reads for
  end-to-end delivery) and the sites' status, and write on the sites' commands. :func:`cloud_acl`
  renders that part from the registry; ``mqtt/acl.conf`` is it for the topic root ``evpark``
  (``python -m evpark.broker_access`` rewrites it; a test fails when it drifts).

The password file holds ``user:$7$<iterations>$<salt>$<hash>`` lines: PBKDF2-HMAC-SHA512 as
Mosquitto 2 writes (``mosquitto_passwd``) and reads them. They are written here rather than with
``mosquitto_passwd -b`` so the password never shows in the process list and no Mosquitto tools
are needed on the machine that runs ``evpark sites add``.

Both files are replaced atomically (a temporary file renamed over the old one, same mode), so a
Mosquitto reading them on SIGHUP sees either the old or the new version.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mqtt.topics import Topics, validate_site_id

PBKDF2_ITERATIONS = 101
"""What mosquitto_passwd 2.0 writes (Mosquitto reads the count from each line)."""
SALT_BYTES = 12
CLOUD_PREFIX = "evpark-"
"""Broker users of the cloud services are ``evpark-<service>``; no site id may start with it."""

_SITE_START = "# site {site_id} (evpark sites add)"
_SITE_END = "# end of site {site_id}"
_SITES_HEADER = "# --- sites: one block each, written by `evpark sites add` (username = site id) ---"


class BrokerFileError(Exception):
    """A password file or ACL that cannot be read or written; ``path`` names it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def new_password() -> str:
    """A random broker password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def password_line(username: str, password: str, *, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """The password-file line Mosquitto 2 reads: ``user:$7$iterations$salt$hash`` (base64)."""
    if ":" in username or not username:
        raise ValueError("a broker username must be non-empty and contain no ':'")
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(line: str, password: str) -> bool:
    """Whether ``line`` (``user:$7$...``) accepts ``password``."""
    _user, _, hashed = line.partition(":")
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    iterations, salt = int(parts[2]), base64.b64decode(parts[3])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return secrets.compare_digest(base64.b64encode(digest).decode(), parts[4])


# --- the ACL ---------------------------------------------------------------------------------


def cloud_user(service: str) -> str:
    return f"{CLOUD_PREFIX}{service}"


@dataclass(frozen=True)
class CloudUser:
    service: str
    categories: tuple[str, ...]

    @property
    def username(self) -> str:
        return cloud_user(self.service)


def cloud_users() -> list[CloudUser]:
    """One broker user per registered service that reads MQTT."""
    from cloud.registry import specs

    # Every reader also gets the site category: the MqttLink's end-to-end delivery reads the sites'
    # hellos, high-water marks and answers to site.resend there, whatever else the service reads.
    readers = [CloudUser(spec.name, tuple(dict.fromkeys((*spec.mqtt_categories, "site"))))
               for spec in specs() if spec.mqtt_categories]
    if not readers:
        return []
    # The ingest bridge (EVPARK_INGEST=partitioned, cloud/platform/ingest.py) reads what every service reads.
    every = tuple(dict.fromkeys(category for user in readers for category in user.categories))
    return [*readers, CloudUser("ingest", every)]


def cloud_acl(root: str = "evpark", users: Iterable[CloudUser] | None = None) -> str:
    """The ACL's head: an explanation and every cloud service's user block, for topic root ``root``."""
    lines = [
        "# Mosquitto ACL for the evpark edge⇄cloud link (acl_file in mosquitto.conf).",
        "# Generated by `python -m evpark.broker_access` from the registry (cloud/registry.py) for the",
        f"# topic root {root!r}; `evpark sites add` appends one block per site. Do not edit the cloud part.",
        "#",
        f"#   {root}/sites/<site_id>/up/<category>   site -> cloud envelopes (mqtt/topics.py)",
        f"#   {root}/sites/<site_id>/status          the site's link state, retained, and its last will",
        f"#   {root}/sites/<site_id>/down/command    cloud -> site",
        "#",
        "# Nothing is allowed unless a block below allows it: a user without a block (a site made by",
        "# hand with mosquitto_passwd only) can log in but neither publish nor receive. \"read\" lets a",
        "# client receive, \"write\" publish; Mosquitto silently drops a refused publish (MQTT 3.1.1 has",
        "# no negative PUBACK) and never delivers what a subscriber may not read, even via a wildcard.",
        "",
        "# --- cloud services: one user each, evpark-<service> (client id = username) ---",
    ]
    for user in cloud_users() if users is None else users:
        lines.append(f"user {user.username}")
        lines += [f"topic read {root}/sites/+/up/{category}/#" for category in user.categories]
        lines += [f"topic read {root}/sites/+/status", f"topic write {root}/sites/+/down/#", ""]
    lines.append(_SITES_HEADER)
    return "\n".join(lines) + "\n"


def site_acl(site_id: str, root: str = "evpark") -> str:
    """A site's ACL block: its own uplink and status to publish, its own commands to receive."""
    topics = Topics(root)
    validate_site_id(site_id)
    return "\n".join([
        _SITE_START.format(site_id=site_id),
        f"user {site_id}",
        f"topic write {root}/sites/{site_id}/up/#",
        f"topic write {topics.status(site_id)}",
        f"topic read {topics.down(site_id)}",
        _SITE_END.format(site_id=site_id),
    ]) + "\n"


def _without_site_block(text: str, site_id: str) -> tuple[str, bool]:
    start, end = _SITE_START.format(site_id=site_id), _SITE_END.format(site_id=site_id)
    pattern = re.compile(rf"^{re.escape(start)}\n.*?^{re.escape(end)}\n", re.MULTILINE | re.DOTALL)
    kept, removed = pattern.subn("", text)
    return kept, removed > 0


# --- the files --------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BrokerFileError(path, f"cannot be read ({exc.strerror or exc})") from None


def check_writable(path: Path) -> None:
    """Raise :class:`BrokerFileError` unless ``path`` can be replaced (its folder writable, the file
    readable if it exists), before anything is changed anywhere."""
    folder = path.parent
    if not folder.is_dir():
        raise BrokerFileError(path, f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BrokerFileError(path, f"not writable: no write permission on {folder} (run as the broker's admin, "
                                    "e.g. with sudo)")
    if path.exists() and not os.access(path, os.R_OK):
        raise BrokerFileError(path, "not readable")
    if path.is_dir():
        raise BrokerFileError(path, "is a folder, not a file")


def _replace(path: Path, text: str, *, new_mode: int) -> None:
    """Write ``text`` over ``path`` atomically, keeping its mode (``new_mode`` for a new file)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = new_mode
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise BrokerFileError(path, f"cannot be written ({exc.strerror or exc})") from None


def users_in(password_file: Path) -> list[str]:
    text = _read(password_file) or ""
    return [line.split(":", 1)[0] for line in text.splitlines() if ":" in line and not line.startswith("#")]


@dataclass(frozen=True)
class BrokerFiles:
    """A Mosquitto password file and ACL file that evpark keeps."""

    password_file: Path
    acl_file: Path
    root: str = "evpark"

    def check(self) -> None:
        check_writable(self.password_file)
        check_writable(self.acl_file)

    def add_site(self, site_id: str, password: str) -> None:
        """Add the site's password line and ACL block. A user of that name in the password file
        is refused (:class:`BrokerFileError`): the site must be removed first."""
        validate_site_id(site_id)
        self.check()
        if site_id in users_in(self.password_file):
            raise BrokerFileError(self.password_file, f"has a user {site_id!r} already; remove it first "
                                                      f"(evpark sites remove {site_id})")
        acl = _read(self.acl_file)
        if acl is None:
            acl = cloud_acl(self.root)
        acl, _ = _without_site_block(acl, site_id)
        acl = acl if acl.endswith("\n") or not acl else acl + "\n"
        passwords = _read(self.password_file) or ""
        if passwords and not passwords.endswith("\n"):
            passwords += "\n"
        # The ACL first: a password without its ACL block could log in (and do nothing) for a moment.
        _replace(self.acl_file, acl + site_acl(site_id, self.root), new_mode=0o644)
        _replace(self.password_file, passwords + password_line(site_id, password) + "\n", new_mode=0o600)

    def add_user(self, username: str, password: str) -> None:
        """Add or replace a password line (a cloud service's user)."""
        self.check()
        kept = [line for line in (_read(self.password_file) or "").splitlines()
                if line.split(":", 1)[0] != username and line.strip()]
        _replace(self.password_file, "\n".join([*kept, password_line(username, password)]) + "\n", new_mode=0o600)

    def remove_site(self, site_id: str) -> bool:
        """Remove the site's password line and ACL block; False if neither was there."""
        self.check()
        passwords = _read(self.password_file) or ""
        kept = [line for line in passwords.splitlines() if line.split(":", 1)[0] != site_id]
        removed_user = len(kept) != len(passwords.splitlines())
        acl, removed_block = _without_site_block(_read(self.acl_file) or "", site_id)
        if removed_user:
            _replace(self.password_file, "\n".join(kept) + ("\n" if kept else ""), new_mode=0o600)
        if removed_block:
            _replace(self.acl_file, acl, new_mode=0o644)
        return removed_user or removed_block


REPO_ACL = Path(__file__).resolve().parents[1] / "mqtt" / "acl.conf"


def main(argv: list[str] | None = None) -> int:
    """Rewrite ``mqtt/acl.conf`` (``--check``: exit 1 if it is out of date)."""
    args = sys.argv[1:] if argv is None else argv
    expected = cloud_acl("evpark")
    current = REPO_ACL.read_text(encoding="utf-8") if REPO_ACL.exists() else ""
    if "--check" in args:
        if current != expected:
            print(f"{REPO_ACL} is out of date: run python -m evpark.broker_access", file=sys.stderr)
            return 1
        return 0
    if current != expected:
        REPO_ACL.write_text(expected, encoding="utf-8")
        print(f"wrote {REPO_ACL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
