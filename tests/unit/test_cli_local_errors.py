"""A local failure of a ``berth`` command is told as what it is, never as "cannot reach Berth": a file the
command could not write names the file, a reader of stdout that went away (``berth ps -o json | head``)
ends the command quietly (click's exit status 1 for EPIPE), and a local address ``berth app`` cannot listen
on is refused before anything is asked of the gateway."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from services.cli.main import _register, cli
from services.cli.running import run_async


@run_async
async def _raising(exc: BaseException) -> None:
    raise exc


def test_a_local_file_that_cannot_be_written_is_named() -> None:
    with pytest.raises(click.ClickException) as raised:
        _raising(FileNotFoundError(2, "No such file or directory", "/missing/dir/x.part"))
    assert raised.value.message == "/missing/dir/x.part: No such file or directory"


def test_a_connection_failure_still_says_berth_is_not_reached() -> None:
    with pytest.raises(click.ClickException) as raised:
        _raising(ConnectionRefusedError(111, "Connection refused"))
    assert raised.value.message.startswith("cannot reach Berth: ")


@contextlib.contextmanager
def stdout_on_a_pipe(reader_ended: bool) -> Iterator[None]:
    """sys.stdout on the write end of a real pipe, whose reader has ended or still reads (set in the test's
    body: pytest's capture sets sys.stdout again between a fixture and the test)."""
    read_end, write_end = os.pipe()
    if reader_ended:
        os.close(read_end)
    saved, sys.stdout = sys.stdout, os.fdopen(write_end, "w")
    try:
        yield
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.close()
        sys.stdout = saved
        if not reader_ended:
            os.close(read_end)


def test_a_broken_pipe_on_a_closed_stdout_is_left_to_click() -> None:
    with stdout_on_a_pipe(reader_ended=True):  # `| head` has read what it wanted and ended
        with pytest.raises(BrokenPipeError):  # click's main ends quietly, status 1; it said "cannot reach Berth"
            _raising(BrokenPipeError(32, "Broken pipe"))


def test_a_broken_pipe_while_stdout_is_read_is_the_connection() -> None:
    with stdout_on_a_pipe(reader_ended=False), pytest.raises(click.ClickException) as raised:
        _raising(BrokenPipeError(32, "Broken pipe"))
    assert raised.value.message.startswith("cannot reach Berth")


def test_app_refuses_a_local_address_in_use_before_asking_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    _register()
    for name in [k for k in os.environ if k.startswith("BERTH_")]:
        monkeypatch.delenv(name)
    with socket.socket() as nothing_there:  # a port nothing listens on: the gateway would be unreachable
        nothing_there.bind(("127.0.0.1", 0))
        gateway_port = nothing_there.getsockname()[1]
    monkeypatch.setenv("BERTH_ENDPOINT", f"http://127.0.0.1:{gateway_port}")
    monkeypatch.setenv("BERTH_ACCESS_KEY", "AKIAEXAMPLE000000000")
    monkeypatch.setenv("BERTH_SECRET_KEY", "secret")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["app", "train", "8888", "--bind", f"127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert f"Error: cannot listen on 127.0.0.1:{port}: " in result.output, result.output
    assert "address already in use" in result.output and "cannot reach" not in result.output, result.output
