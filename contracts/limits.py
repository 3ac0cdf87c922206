"""Limits on input from outside: every command field that reaches an event, declared once.

``LIMITS`` maps each command built from API input to the limits of its fields; nested
structs (``SessionSpec``, ``KernelSpec``, ``LimitsChange``, ``GroupOptionsChange``) have their
own entries.
The gateway runs ``check_limits`` on every such command before anything is loaded or
recorded, so a client gets a clear BAD_INPUT naming the field and its limit. Together they
keep every event far below ``contracts.travel.MAX_EVENT_BYTES``; the travel guard where
events are saved is the backstop for any other path.

Only size and shape are checked here (no text may hold a NUL character: PostgreSQL's text and
jsonb cannot). What a value means (does the project exist, is the
role known, is a name a valid subject token) stays the domain's to decide, with its own
messages; a name's length is checked here too so that an oversized one never travels
through the domain at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from contracts import tenancy_commands as tc
from contracts.mounts import MAX_MOUNTS, MAX_TARGET_BYTES, MountSpec
from contracts.session import KernelSpec, SessionSpec

__all__ = [
    "AMOUNT", "CHOICE", "DESCRIPTION", "IMAGE", "IMAGE_REFERENCE", "LIMITS", "Limit", "LimitError", "MAX_LIST",
    "MAX_SESSION_LIST", "MOUNT_FIELDS", "Many", "NAME", "SESSION_NAME", "SLOTS", "STARTUP_COMMAND", "Text", "check_limits",
    "check_value",
]


class LimitError(ValueError):
    """Raised when a field is over its limit or not of its shape; the message names both."""


class Text(NamedTuple):
    """A text field: at most ``max_length`` characters (UTF-8 bytes when ``in_bytes``) and, when
    ``pattern`` is set, matching it as a whole (``fullmatch``); ``shape`` describes it for people."""

    field: str
    max_length: int
    in_bytes: bool = False
    pattern: re.Pattern[str] | None = None
    shape: str = ""


class Many(NamedTuple):
    """A list or a mapping: at most ``max_items`` entries, each value within ``each`` (a nested
    struct is checked against its own limits) and each key within ``keys``."""

    field: str
    max_items: int
    each: Text | None = None
    keys: Text | None = None


Limit = Text | Many

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]{{1,5}})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?")
"""Docker's reference grammar: ``[host[:port]/]name[/name...][:tag][@algorithm:hex]``."""

SESSION_NAME = Text("session name", 64, pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"),
                    shape="letters, digits, '.', '_' or '-', starting with a letter or digit")
IMAGE = Text("image", 255, pattern=IMAGE_REFERENCE,
             shape="a Docker image reference such as 'berth/python:latest' or 'registry:5000/team/app:1.0'")
STARTUP_COMMAND = Text("startupCommand", 64 * 1024, in_bytes=True)
NAME = Text("name", 64)
"""Names of domains, projects, users, resource policies and resource groups (the domain checks their shape)."""
DESCRIPTION = Text("description", 1024)
AMOUNT = Text("resource amount", 64)
SLOTS = Many("resource slots", 16, each=AMOUNT, keys=Text("resource slot name", 64))
CHOICE = 32
"""Length of a choice from a closed vocabulary (role, scheduler, session type, ...)."""
MAX_LIST = 256
"""Entries of a list of names in tenancy (a user's projects, a resource group's visibility lists)."""
MAX_SESSION_LIST = 64
"""Entries of a session's lists of ids (dependencies, designated agents) and of its kernels."""
MOUNT_FIELDS = {"folder_id": Text("mount folder", 64), "name": Text("mount name", 128),
                "volume": Text("mount volume", 64), "target": Text("mount target", MAX_TARGET_BYTES, in_bytes=True)}
"""A mount's fields; ``name`` is a folder's name or id as asked for (``--mount NAME``), ``target`` a path."""


def _names(field: str, max_length: int = 128, max_items: int = MAX_LIST) -> Many:
    return Many(field, max_items, each=Text(f"{field} entry", max_length))


LIMITS: dict[type[msgspec.Struct], dict[str, Limit]] = {
    SessionSpec: {
        "name": SESSION_NAME, "image": IMAGE, "startup_command": STARTUP_COMMAND,
        "kernels": Many("kernels", MAX_SESSION_LIST),
        "dependencies": _names("dependencies", max_items=MAX_SESSION_LIST),
        "designated_agents": _names("designatedAgents", max_items=MAX_SESSION_LIST),
        "user": Text("user", 128), "domain": Text("domain", 128), "project": Text("project", 128),
        "resource_group": Text("resourceGroup", 128),
        "mounts": Many("mounts", MAX_MOUNTS),
    },
    KernelSpec: {"slots": SLOTS},
    MountSpec: MOUNT_FIELDS,
    tc.CreateDomain: {"name": NAME, "description": DESCRIPTION, "total_resource_slots": SLOTS},
    tc.UpdateDomain: {"total_resource_slots": SLOTS},
    tc.CreateProject: {"name": NAME, "domain": NAME, "description": DESCRIPTION, "total_resource_slots": SLOTS},
    tc.UpdateProject: {"total_resource_slots": SLOTS},
    tc.CreateUser: {"name": NAME, "domain": NAME, "role": Text("role", CHOICE), "projects": _names("projects", 64)},
    tc.CreateKeypair: {"user": NAME, "resource_policy": Text("resourcePolicy", 64)},
    tc.ChangeKeypairPolicy: {"resource_policy": Text("resourcePolicy", 64)},
    tc.CreateResourcePolicy: {"name": NAME},
    tc.LimitsChange: {"total_resource_slots": SLOTS, "max_pending_session_resource_slots": SLOTS,
                      "allowed_vfolder_hosts": Many("allowedVfolderHosts", 64, keys=Text("volume", 64))},
    # (each volume's permissions are known names, checked by the domain, at most 8 distinct)
    tc.CreateResourceGroup: {"name": NAME, "description": DESCRIPTION},
    tc.GroupOptionsChange: {
        "scheduler": Text("scheduler", CHOICE), "agent_selection": Text("agentSelection", CHOICE),
        "allowed_session_types": Many("allowedSessionTypes", 8, each=Text("allowedSessionTypes entry", CHOICE)),
        "domains": _names("domains", 64), "projects": _names("projects", 64), "keypairs": _names("keypairs", 64),
    },
}
"""Command (or nested struct) type -> field -> its limit. A struct field without an entry is
still walked when it holds a struct (``RequestSession.spec``, ``LimitsChange``, ``GroupOptionsChange``)."""


def check_limits(command: msgspec.Struct) -> None:
    """Returns when every field of ``command`` (and of the structs in it) is within ``LIMITS``;
    raises ``LimitError`` naming the first field that is not, and its limit."""
    limits = LIMITS.get(type(command), {})
    for name in command.__struct_fields__:
        value = getattr(command, name)
        if value is None:
            continue
        limit = limits.get(name)
        if limit is not None:
            check_value(limit, value)
        elif isinstance(value, msgspec.Struct):
            check_limits(value)


def check_value(limit: Limit, value: Any) -> None:
    """Checks one value against its limit (a ``Decimal`` amount as its text); raises ``LimitError``."""
    if isinstance(limit, Text):
        _check_text(limit, value if isinstance(value, str) else str(value))
        return
    if len(value) > limit.max_items:
        raise LimitError(f"{limit.field}: at most {limit.max_items} entries, got {len(value)}")
    items = value.items() if isinstance(value, Mapping) else ((None, v) for v in value)
    for key, item in items:
        if limit.keys is not None and key is not None:
            _check_text(limit.keys, str(key))
        if isinstance(item, msgspec.Struct):
            check_limits(item)
        elif limit.each is not None:
            _check_text(limit.each, item if isinstance(item, str) else str(item))


def _check_text(limit: Text, value: str) -> None:
    if "\x00" in value:  # PostgreSQL text and jsonb cannot hold it: an event with one could never be projected
        raise LimitError(f"{limit.field}: must not contain NUL characters")
    size = len(value.encode()) if limit.in_bytes else len(value)
    if size > limit.max_length:
        unit = "bytes (UTF-8)" if limit.in_bytes else "characters"
        raise LimitError(f"{limit.field}: at most {limit.max_length} {unit}, got {size}")
    if limit.pattern is not None and not limit.pattern.fullmatch(value):
        raise LimitError(f"{limit.field} {value!r} is not valid: use {limit.shape}")
