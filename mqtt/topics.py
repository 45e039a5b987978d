"""Topic names of the edge⇄cloud link, written once.

Layout (``<root>`` defaults to ``evpark``; tests use a fresh root so they never see each
other's messages)::

    <root>/sites/<site_id>/up/<category>      edge → cloud, envelopes (QoS 1)
    <root>/sites/<site_id>/up/site/hello      retained, see RETAINED_TYPES
    <root>/sites/<site_id>/up/site/inventory  retained
    <root>/sites/<site_id>/down/command       cloud → edge, commands (QoS 1)
    <root>/sites/<site_id>/status             the link's state, retained, set by the edge and by its
                                              last will (mqtt.link; not an envelope)

Categories: ``site`` (hello, inventory, outbox_dropped), ``charger`` (boot, status, connection,
notification, call), ``session`` (started, meter, stopped), ``bay`` (occupancy, usage),
``result`` (command results). The category is the part of the envelope ``type`` before the first dot, so a
subscriber picks what it consumes by topic and the ACL can stay ``<root>/sites/<site_id>/#``
per site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QOS = 1
"""Every evpark message is QoS 1: at least once, deduplicated by envelope id."""

UP_CATEGORIES = ("site", "charger", "session", "bay", "result")

RETAINED_TYPES = frozenset({"site.hello", "site.inventory"})
"""Published with the retain flag, each on its own topic (``.../up/site/hello``,
``.../up/site/inventory``: a broker keeps one retained message per topic), so a cloud service
that subscribes for the first time, after the site connected, still learns every site and its
hardware. Receivers deduplicate by envelope id as for any message, so the retained copy
changes nothing the second time."""

_SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_site_id(site_id: str) -> str:
    """A site id is one topic level: letters, digits, ``_.-``, at most 64 characters."""
    if not _SITE_ID.fullmatch(site_id):
        raise ValueError(
            f"site id {site_id!r} must be 1-64 characters of letters, digits, '_', '.' or '-'"
        )
    return site_id


def validate_topic_root(root: str) -> str:
    """A topic root is one or more levels, with no wildcard and no leading or trailing '/'."""
    if not root or any(c in root for c in "+#\x00") or root.startswith("/") or root.endswith("/"):
        raise ValueError("topic root must be non-empty, without '+', '#', or a leading/trailing '/'")
    return root


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one topic root."""

    root: str = "evpark"

    def up(self, site_id: str, category: str) -> str:
        if category not in UP_CATEGORIES:
            raise ValueError(f"unknown uplink category {category!r}")
        return f"{self.root}/sites/{validate_site_id(site_id)}/up/{category}"

    def up_for_type(self, site_id: str, message_type: str) -> str:
        topic = self.up(site_id, category_of(message_type))
        if message_type in RETAINED_TYPES:
            topic += "/" + message_type.split(".", 1)[1]
        return topic

    def up_all_sites(self, category: str) -> str:
        """Subscription filter for one category from every site (cloud side)."""
        if category not in UP_CATEGORIES:
            raise ValueError(f"unknown uplink category {category!r}")
        return f"{self.root}/sites/+/up/{category}/#"  # '#' also matches the category level itself

    def down(self, site_id: str) -> str:
        return f"{self.root}/sites/{validate_site_id(site_id)}/down/command"

    def status(self, site_id: str) -> str:
        """The site's retained link status (:mod:`mqtt.link`): online at connect, offline in its last will."""
        return f"{self.root}/sites/{validate_site_id(site_id)}/status"

    def status_all_sites(self) -> str:
        """Subscription filter for every site's link status (cloud side)."""
        return f"{self.root}/sites/+/status"

    def is_status(self, topic: str) -> bool:
        """True for a site's link-status topic under this root."""
        prefix = f"{self.root}/sites/"
        rest = topic[len(prefix):].split("/") if topic.startswith(prefix) else []
        return len(rest) == 2 and rest[1] == "status"

    def site_of(self, topic: str) -> str | None:
        """The site id named by a topic of this root (of one level or more), or None."""
        prefix = f"{self.root}/sites/"
        rest = topic[len(prefix):].split("/") if topic.startswith(prefix) else []
        if len(rest) >= 2 and rest[0]:
            return rest[0]
        return None


def category_of(message_type: str) -> str:
    category = message_type.split(".", 1)[0]
    if category == "command":
        return "result"
    if category not in UP_CATEGORIES:
        raise ValueError(f"message type {message_type!r} has no uplink category")
    return category
