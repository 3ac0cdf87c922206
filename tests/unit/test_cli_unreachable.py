"""A command whose gateway does not answer says so in one line, exit status 1: never a traceback (an HTTP
request's connection error is not an OSError; ``berth ps`` printed httpx's traceback)."""

from __future__ import annotations

import pytest

from tests.unit.test_cli_input_size import berth


@pytest.mark.parametrize("args", [("ps",), ("run", "-c", "print(1)"), ("agents", "ls")])
def test_an_unreachable_gateway_is_one_line(args: tuple[str, ...]) -> None:
    result = berth(*args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach Berth at http://127.0.0.1:9/graphql" in result.stderr and "is it running?" in result.stderr
