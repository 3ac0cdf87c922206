"""An app inside a real container (network ``none``) reached with ``berth app``: the CLI's local port →
a signed websocket per connection → the gateway → the agent's tunnel → the kernel runner → the app on the
container's own loopback (DESIGN.md §12)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import BERTH, RunningBerth, tenant
from tests.e2e.test_docker_session import docker_berth  # noqa: F401
from tests.support.images import kernel_image  # noqa: F401
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

FILES = ("cd /tmp && echo '<h1>hello from the kernel</h1>' > index.html"
         " && python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 8192)' > blob.bin")
SERVE = "cd /tmp && exec python3 -m http.server 8000 --bind 127.0.0.1"


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None  # the app (or the forwarder) is not listening yet


@dataclass
class Forwarder:
    session_id: str
    url: str
    process: subprocess.Popen[str]


@pytest.fixture
def forwarder(docker_berth: tuple[RunningBerth, str], kernel_image: str) -> Iterator[Forwarder]:  # noqa: F811
    """A session serving HTTP on its port 8000, and `berth app` forwarding it."""
    berth, _ = docker_berth
    session_id = berth.berth_json("session", "create", "-i", kernel_image, "-r", "cpu=0.5,mem=256m")["id"]
    berth.berth("exec", session_id, "--exec", FILES)
    app = subprocess.Popen([*BERTH, "app", session_id, "8000", "--start", SERVE], env=berth.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(app.stdout or []), daemon=True).start()
    try:
        found = wait_for(lambda: next((m for line in lines if (m := re.search(r"(http://[^/ ]+/)", line))), None),
                         timeout=60, message="berth app did not print where it listens")
        yield Forwarder(session_id, found.group(1), app)
    finally:
        if app.poll() is None:
            app.terminate()
        app.wait(timeout=10)
        berth.berth("session", "rm", session_id, check=False)


def test_berth_app_starts_and_reaches_a_web_server_inside_a_container_without_a_network(
        docker_berth: tuple[RunningBerth, str], forwarder: Forwarder) -> None:  # noqa: F811
    berth, _ = docker_berth
    url = forwarder.url
    page = _get(url)  # --start waited until the server listened: the first request is answered
    assert page is not None and b"<h1>hello from the kernel</h1>" in page
    blob = _get(url + "blob.bin")
    assert blob is not None and hashlib.sha256(blob).digest() == hashlib.sha256(bytes(range(256)) * 8192).digest()
    def served_blob() -> str | None:
        log = berth.berth("logs", forwarder.session_id).stdout
        return log if "blob.bin" in log else None

    log = wait_for(served_blob, timeout=30, message="the server's output is not in the session's log")
    assert '"GET / HTTP/1.1" 200' in log, "the detached server writes to the kernel's log"


def test_another_user_cannot_reach_the_app(docker_berth: tuple[RunningBerth, str],  # noqa: F811
                                           forwarder: Forwarder) -> None:
    berth, _ = docker_berth
    bob = tenant(berth, "bob")
    refused = bob.berth("app", forwarder.session_id, "8000", check=False)
    assert refused.returncode == 1 and "NOT_FOUND" in refused.stderr


def test_berth_app_ends_when_its_session_ends(docker_berth: tuple[RunningBerth, str],  # noqa: F811
                                             forwarder: Forwarder) -> None:
    berth, _ = docker_berth
    wait_for(lambda: _get(forwarder.url), timeout=60, message="the app was not reached through berth app")
    berth.berth("session", "rm", forwarder.session_id)
    assert forwarder.process.wait(timeout=60) == 1
    assert "ended (TERMINATED): its apps are gone with it" in (forwarder.process.stderr.read() or "")
