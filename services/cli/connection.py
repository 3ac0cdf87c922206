"""Finds the instance to talk to, and as whom: ``BERTH_ENDPOINT``, else the instance file of ``berth up``;
the keypair of ``BERTH_ACCESS_KEY`` / ``BERTH_SECRET_KEY`` when set, else the instance file's (its
administrator's). Keys set without an endpoint are used with the instance file's gateway: a user who
set their own keypair never acts as the administrator."""

from __future__ import annotations

import os
from typing import Mapping

import click

from services.sdk.client import BerthClient
from services.sdk.instance import read_instance
from services.common.settings import default_data_dir

__all__ = ["checked_endpoint", "connect_client", "env_keypair"]


def env_keypair(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """Returns the keypair of ``BERTH_ACCESS_KEY`` and ``BERTH_SECRET_KEY``, None when neither is set;
    raises ``click.ClickException`` when only one is (the other would be the administrator's)."""
    env = os.environ if environ is None else environ
    access_key, secret_key = env.get("BERTH_ACCESS_KEY", ""), env.get("BERTH_SECRET_KEY", "")
    if not access_key and not secret_key:
        return None
    if not access_key or not secret_key:
        missing = "BERTH_SECRET_KEY" if access_key else "BERTH_ACCESS_KEY"
        raise click.ClickException(
            f"{missing} is not set: BERTH_ACCESS_KEY and BERTH_SECRET_KEY go together (your keypair); "
            "unset both to use the instance's administrator keypair")
    return access_key, secret_key


def checked_endpoint(endpoint: str) -> str:
    """Returns ``BERTH_ENDPOINT`` when it is an http(s) URL; raises ``click.ClickException`` otherwise: the
    client would otherwise try ``/host:port/graphql`` and blame an unreachable Berth ("is it running?")."""
    scheme, sep, rest = endpoint.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise click.ClickException(
            f"BERTH_ENDPOINT must be the gateway's http:// or https:// URL, as `berth up` prints it "
            f"(http://127.0.0.1:PORT or http://127.0.0.1:PORT/graphql), got {endpoint!r}")
    return endpoint.strip()


def connect_client() -> BerthClient:
    """Returns a client for the configured endpoint and keypair; raises ``InstanceNotFoundError`` when there
    is no endpoint (or keypair) to use, ``click.ClickException`` when only one key of a keypair is set."""
    keypair = env_keypair()
    endpoint = os.environ.get("BERTH_ENDPOINT")
    if endpoint:
        return BerthClient(checked_endpoint(endpoint), *(keypair or ("", "")))
    instance = read_instance(default_data_dir())
    return BerthClient(instance.gateway_url, *(keypair or (instance.access_key, instance.secret_key)))
