"""``berth admin agent``: an agent's bus credential (enrolment); ``berth admin bus init``: the bus
trust and the services' credentials for a NATS run by hand (nats.conf, docker-compose.yml).

The credential is signed with the instance's account key, kept by ``berth up`` in
``<data dir>/nats/auth`` (0700, files 0600): only whoever may read that directory — the
instance's operator, the superadmin who also holds ``admin.keypair`` there — can enrol an agent.
It is not an API operation on purpose: the gateway would then hold the signing key, and a
compromised gateway could mint any identity, the relay's included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from contracts.subjects import SubjectError, check_token
from services.cli.output import Output
from services.common.settings import default_data_dir

__all__ = ["agent", "bus"]


_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="The instance's data directory (default $BERTH_DATA_DIR or ~/.berth).")


def _trust_dir(data_dir: Path | None) -> Path:
    from services.supervisor.infrastructure import bus_trust_dir

    return bus_trust_dir(data_dir or default_data_dir())


def _load_trust(data_dir: Path | None) -> Any:
    from services.common.bus_trust import BusTrust

    directory = _trust_dir(data_dir)
    try:
        return BusTrust.load(directory)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except PermissionError:
        raise click.ClickException(f"cannot read {directory}: run this as the user that runs berth up") from None


@click.group()
def agent() -> None:
    """Agents' bus credentials (the instance's local admin material; run where `berth up` runs).

    \b
    berth admin agent enrol gpu-7                   # writes ./gpu-7.creds (0600)
    BERTH_NATS_CREDS=gpu-7.creds BERTH_AGENT_ID=gpu-7 python -m services.agent
    berth admin agent revoke gpu-7                  # NATS refuses its credentials from now on
    """


@agent.command("enrol")
@click.argument("agent_id")
@click.option("--file", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the credential (default ./<agent-id>.creds); never overwritten.")
@_DATA_DIR
@click.pass_obj
def enrol(out: Output, agent_id: str, output: Path | None, data_dir: Path | None) -> None:
    """Issue the bus credential of agent AGENT_ID: it may use only its own subjects (its reports,
    its events consumer, its exec, logs and output subjects, its heartbeat). The agent takes it with
    BERTH_NATS_CREDS. Needs the server packages (berth[server,embedded])."""
    from services.common.bus_identities import agent_identity

    try:
        check_token(agent_id, "agent id")
    except SubjectError as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT_ID") from None
    trust = _load_trust(data_dir)
    path = output or Path(f"{agent_id}.creds")
    if path.exists() or path.is_symlink():
        raise click.ClickException(f"{path} exists: remove it or choose another --file")
    trust.issue(agent_identity(agent_id), path)
    if out.is_json:
        out.json({"agentId": agent_id, "credentials": str(path)})
        return
    out.info(f"wrote the bus credential of agent {agent_id} to {path} (mode 0600); "
             f"start the agent with BERTH_NATS_CREDS={path} BERTH_AGENT_ID={agent_id}")


@agent.command("revoke")
@click.argument("agent_id")
@_DATA_DIR
@click.pass_obj
def revoke(out: Output, agent_id: str, data_dir: Path | None) -> None:
    """Revoke every bus credential issued to agent AGENT_ID: the instance's NATS is told to reload
    and refuses them from then on (a connected agent is cut off)."""
    from services.common.bus_identities import agent_identity
    from services.supervisor.embedded import NatsServer
    from services.supervisor.infrastructure import nats_data_dir

    try:
        check_token(agent_id, "agent id")
    except SubjectError as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT_ID") from None
    trust = _load_trust(data_dir)
    revoked = trust.revoke(agent_identity(agent_id))
    reloaded = NatsServer.reload(nats_data_dir(data_dir or default_data_dir()))
    if out.is_json:
        out.json({"agentId": agent_id, "revoked": revoked, "reloaded": reloaded})
        return
    out.info(f"revoked {revoked} credential(s) of agent {agent_id}; " + (
        "NATS reloaded: they are refused now" if reloaded else
        "no NATS of this instance runs: they are refused from its next start (a NATS of your own: "
        "nats-server --signal reload)"))


@click.group()
def bus() -> None:
    """The bus's trust, for a NATS you run yourself (`berth up` makes its own on first start)."""


@bus.command("init")
@_DATA_DIR
@click.option("--agent", "agent_ids", multiple=True, default=("local",), show_default=True,
              help="Also issue this agent's credential (repeatable).")
@click.pass_obj
def bus_init(out: Output, data_dir: Path | None, agent_ids: tuple[str, ...]) -> None:
    """Create the bus trust in DATA_DIR/nats/auth (kept when it exists): server.conf, which
    nats.conf and ops/nats/cluster.conf include, and creds/<identity>.creds for admin, every
    service and each --agent (0600)."""
    from services.common.bus_identities import ADMIN, SERVICES, agent_identity
    from services.common.bus_trust import BusTrust

    for agent_id in agent_ids:
        try:
            check_token(agent_id, "agent id")
        except SubjectError as exc:
            raise click.BadParameter(str(exc), param_hint="--agent") from None
    trust = BusTrust.load_or_create(_trust_dir(data_dir))
    issued = [trust.credentials(identity) for identity in (ADMIN, *SERVICES, *map(agent_identity, agent_ids))]
    if out.is_json:
        out.json({"serverConfig": str(trust.server_config), "credentials": [str(p) for p in issued]})
        return
    out.info(f"bus trust in {trust.directory}: include {trust.server_config} in the server's config; "
             f"credentials in {issued[0].parent}")
