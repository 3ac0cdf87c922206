"""A ``BERTH_ENDPOINT`` that is not an http(s) URL is named as the mistake it is, in one line: it was
taken as a path (``/localhost:8080/graphql``) and reported as Berth being unreachable ("is it running?")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.cli.connection import checked_endpoint


@pytest.mark.parametrize("endpoint", ["localhost:8080", "127.0.0.1:8080/graphql", "ftp://h:1", "http://"])
def test_an_endpoint_without_an_http_scheme_is_refused_naming_it(endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")} | {"BERTH_ENDPOINT": endpoint}
    result = subprocess.run([sys.executable, "-m", "services.cli", "ps"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "is it running?" not in result.stderr
    assert "BERTH_ENDPOINT must be the gateway's http:// or https:// URL" in result.stderr
    assert repr(endpoint) in result.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "https://berth.example/graphql", "HTTP://h:1/"])
def test_an_http_endpoint_is_used_as_given(endpoint: str) -> None:
    assert checked_endpoint(endpoint) == endpoint
