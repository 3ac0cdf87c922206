"""Read models of the tenancy context: ``domains``, ``projects``, ``users``, ``keypairs_view``
(no secrets), ``resource_policies`` and ``resource_groups``.

Rows come only from events: a ``*.created`` event inserts the row, later events change
it, and every event moves ``version``, ``updated_at`` and ``last_position``. Names are
the keys; an event finds its row by the name inside its aggregate id (``domain_ml``).
Limits and options are kept whole as JSON and, for filtering, in columns.
"""

from __future__ import annotations

from functools import singledispatch

from contracts import tenancy as ev
from contracts.envelope import Event
from contracts.tenancy import KeypairLimits, ResourceGroupOptions
from projections.delivery import Entry
from projections.values import json_text
from projections.writer import Writer

__all__ = ["apply_event"]

_PREFIXES = {"domains": "domain_", "projects": "project_", "users": "user_", "resource_policies": "policy_",
             "resource_groups": "rgroup_"}


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the tenancy tables, by its type; this default, for events that do not
    concern tenancy, changes nothing (``runner.handlers`` leaves it out)."""


def _stamp(event: Event, entry: Entry) -> tuple[object, ...]:
    """Returns (created_at, updated_at, version, last_position) of a new row."""
    return event.timestamp, event.timestamp, event.originator_version, entry.position


def _key(table: str, event: Event) -> str:
    if table == "keypairs_view":
        return event.originator_id
    return event.originator_id.removeprefix(_PREFIXES[table])


def _update(w: Writer, table: str, event: Event, entry: Entry, assignments: str = "", *values: object) -> None:
    key = "access_key" if table == "keypairs_view" else "name"
    sets = f"{assignments}, " if assignments else ""
    w.execute_one(
        f"UPDATE {table} SET {sets}updated_at = %s, version = %s, last_position = %s WHERE {key} = %s",
        (*values, event.timestamp, event.originator_version, entry.position, _key(table, event)),
        f"no row in {table} for {type(event).type_name()} of {event.originator_id}",
    )


@apply_event.register
def _(event: ev.DomainCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO domains (name, description, total_resource_slots, created_at, updated_at, version, last_position)"
        " VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s)",
        (event.name, event.description, json_text(event.total_resource_slots), *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.DomainUpdated, w: Writer, entry: Entry) -> None:
    _update(w, "domains", event, entry, "total_resource_slots = %s::jsonb", json_text(event.total_resource_slots))


@apply_event.register
def _(event: ev.ProjectCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO projects (name, domain, description, total_resource_slots, created_at, updated_at, version,"
        " last_position) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
        (event.name, event.domain, event.description, json_text(event.total_resource_slots), *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.ProjectUpdated, w: Writer, entry: Entry) -> None:
    _update(w, "projects", event, entry, "total_resource_slots = %s::jsonb", json_text(event.total_resource_slots))


@apply_event.register
def _(event: ev.UserCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO users (name, domain, role, projects, is_active, created_at, updated_at, version, last_position)"
        " VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s)",
        (event.name, event.domain, event.role.value, list(event.projects), *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.UserDeactivated, w: Writer, entry: Entry) -> None:
    _update(w, "users", event, entry, "is_active = false")


@apply_event.register
def _(event: ev.KeypairCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO keypairs_view (access_key, user_name, domain, role, resource_policy, is_active, created_at,"
        " updated_at, version, last_position) VALUES (%s, %s, %s, %s, %s, true, %s, %s, %s, %s)",
        (event.originator_id, event.user, event.domain, event.role.value, event.resource_policy,
         *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.KeypairDeactivated, w: Writer, entry: Entry) -> None:
    _update(w, "keypairs_view", event, entry, "is_active = false")


@apply_event.register
def _(event: ev.KeypairPolicyChanged, w: Writer, entry: Entry) -> None:
    _update(w, "keypairs_view", event, entry, "resource_policy = %s", event.resource_policy)


_LIMIT_COLUMNS = (
    "total_resource_slots", "max_concurrent_sessions", "max_pending_session_count",
    "max_pending_session_resource_slots", "max_containers_per_session", "idle_timeout", "max_session_lifetime",
)
_SLOT_COLUMNS = {"total_resource_slots", "max_pending_session_resource_slots"}


def _limit_values(limits: KeypairLimits) -> list[object]:
    values: list[object] = [json_text(limits)]
    for name in _LIMIT_COLUMNS:
        value = getattr(limits, name)
        values.append(json_text(value) if name in _SLOT_COLUMNS else value)
    return values


def _placeholders(columns: tuple[str, ...]) -> str:
    return ", ".join("%s::jsonb" if c in _SLOT_COLUMNS else "%s" for c in columns)


@apply_event.register
def _(event: ev.ResourcePolicyCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        f"INSERT INTO resource_policies (name, limits, {', '.join(_LIMIT_COLUMNS)}, created_at, updated_at, version,"
        f" last_position) VALUES (%s, %s::jsonb, {_placeholders(_LIMIT_COLUMNS)}, %s, %s, %s, %s)",
        (event.name, *_limit_values(event.limits), *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.ResourcePolicyUpdated, w: Writer, entry: Entry) -> None:
    sets = ", ".join(["limits = %s::jsonb"] + [
        f"{c} = %s::jsonb" if c in _SLOT_COLUMNS else f"{c} = %s" for c in _LIMIT_COLUMNS])
    _update(w, "resource_policies", event, entry, sets, *_limit_values(event.limits))


def _option_values(options: ResourceGroupOptions) -> tuple[object, ...]:
    seen = options.visibility
    return (
        json_text(options), options.scheduler.value, options.agent_selection.value,
        [t.value for t in options.allowed_session_types], options.pending_timeout, seen.public,
        list(seen.domains), list(seen.projects), list(seen.keypairs),
    )


_OPTION_COLUMNS = ("options", "scheduler", "agent_selection", "allowed_session_types", "pending_timeout", "is_public",
                   "visible_domains", "visible_projects", "visible_keypairs")


@apply_event.register
def _(event: ev.ResourceGroupCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        f"INSERT INTO resource_groups (name, description, {', '.join(_OPTION_COLUMNS)}, created_at, updated_at,"
        " version, last_position) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (event.name, event.description, *_option_values(event.options), *_stamp(event, entry)),
    )


@apply_event.register
def _(event: ev.ResourceGroupUpdated, w: Writer, entry: Entry) -> None:
    sets = ", ".join("options = %s::jsonb" if c == "options" else f"{c} = %s" for c in _OPTION_COLUMNS)
    _update(w, "resource_groups", event, entry, sets, *_option_values(event.options))
