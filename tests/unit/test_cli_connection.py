"""Whom the CLI talks to, and as whom: a keypair set in the environment is used, with or without
``BERTH_ENDPOINT``; only the instance file's keypair (its administrator's) when none is set."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from services.cli.connection import connect_client, env_keypair
from services.sdk.instance import Instance, write_instance

ADMIN = ("AKIAADMIN0000000000", "admin-secret")
DAVE = ("AKIADAVE00000000000", "dave-secret")


@pytest.fixture
def instance_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory whose instance file names this (living) process, with the admin's keypair."""
    write_instance(tmp_path, Instance(gateway_url="http://127.0.0.1:1/graphql", nats_url="nats://127.0.0.1:2",
                                      pg_dsn="postgresql:///x", pid=os.getpid(),
                                      access_key=ADMIN[0], secret_key=ADMIN[1]))
    monkeypatch.setenv("BERTH_DATA_DIR", str(tmp_path))
    for name in ("BERTH_ENDPOINT", "BERTH_ACCESS_KEY", "BERTH_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


async def test_a_keypair_set_without_an_endpoint_is_used_with_the_instance_s_gateway(
        instance_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_ACCESS_KEY", DAVE[0])
    monkeypatch.setenv("BERTH_SECRET_KEY", DAVE[1])
    async with connect_client() as client:
        assert client.access_key == DAVE[0]  # was the administrator's: the keys were ignored
        assert client.graphql_url == "http://127.0.0.1:1/graphql"


async def test_without_a_keypair_the_instance_s_administrator_is_used(instance_dir: Path) -> None:
    async with connect_client() as client:
        assert client.access_key == ADMIN[0]


async def test_an_endpoint_takes_the_keypair_set_with_it(instance_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_ENDPOINT", "http://127.0.0.1:3")
    monkeypatch.setenv("BERTH_ACCESS_KEY", DAVE[0])
    monkeypatch.setenv("BERTH_SECRET_KEY", DAVE[1])
    async with connect_client() as client:
        assert (client.access_key, client.graphql_url) == (DAVE[0], "http://127.0.0.1:3/graphql")


@pytest.mark.parametrize(("environ", "missing"), [
    ({"BERTH_ACCESS_KEY": DAVE[0]}, "BERTH_SECRET_KEY"),
    ({"BERTH_SECRET_KEY": DAVE[1]}, "BERTH_ACCESS_KEY"),
])
def test_half_a_keypair_is_refused_never_completed_with_the_administrator_s(environ: dict[str, str],
                                                                           missing: str) -> None:
    with pytest.raises(click.ClickException, match=f"^{missing} is not set: BERTH_ACCESS_KEY and BERTH_SECRET_KEY go"):
        env_keypair(environ)
    assert env_keypair({}) is None and env_keypair({"BERTH_ACCESS_KEY": "", "BERTH_SECRET_KEY": ""}) is None
