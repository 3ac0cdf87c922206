"""What `berth up` refuses before it starts anything: a data directory another `berth up` holds (its
lock, freed however the holder ends), a gateway port in use, several agents with a real backend, a
malformed agent capacity. Each refusal is one line and exit status 1, with nothing started."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest

from services.common.settings import Settings
from services.supervisor import up as up_module
from services.supervisor.preflight import LOCK_FILE, check_settings, holding_data_dir
from services.supervisor.runtime import StartRefused

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _sound(tmp_path: Path, **changes: Any) -> Settings:
    settings = Settings(data_dir=tmp_path / "berth", agent_backend="simulated", agent_capacity="cpu=4,mem=8g",
                        gateway_port=0, storage_bind="127.0.0.1:0")
    return msgspec.structs.replace(settings, **changes)


# ------------------------------------------------------------------ the data directory's lock


def test_a_second_holder_of_a_data_dir_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with holding_data_dir(tmp_path):
        with pytest.raises(StartRefused) as refused:
            with holding_data_dir(tmp_path):
                pass
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(f"Berth is already running on {tmp_path} (pid ")
    assert "stop it first" in line
    with holding_data_dir(tmp_path):  # released at the end of the first one's block
        pass


HOLDER = textwrap.dedent('''
    import sys, threading
    from pathlib import Path
    from services.supervisor.preflight import holding_data_dir
    with holding_data_dir(Path(sys.argv[1])):
        print("held", flush=True)
        threading.Event().wait()
''')


def test_the_lock_of_a_holder_killed_with_sigkill_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StartRefused, match=rf"\(pid {holder.pid}\)"):
            with holding_data_dir(tmp_path):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with holding_data_dir(tmp_path):  # no stale lock: the kernel released it with the process
            assert (tmp_path / LOCK_FILE).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# ------------------------------------------------------------------ the settings


def test_sound_settings_pass(tmp_path: Path) -> None:
    check_settings(_sound(tmp_path))


def test_a_gateway_port_in_use_is_refused(tmp_path: Path, port_in_use: int) -> None:
    with pytest.raises(StartRefused, match=rf"gateway cannot listen on 127.0.0.1:{port_in_use} .*--port"):
        check_settings(_sound(tmp_path, gateway_port=port_in_use))


def test_a_storage_port_in_use_is_refused(tmp_path: Path, port_in_use: int) -> None:
    with pytest.raises(StartRefused, match=rf"storage service cannot listen on 127.0.0.1:{port_in_use}"):
        check_settings(_sound(tmp_path, storage_bind=f"127.0.0.1:{port_in_use}"))


def test_several_agents_need_the_simulated_backend(tmp_path: Path) -> None:
    with pytest.raises(StartRefused, match="several local agents .3. need the simulated backend, not 'docker'"):
        check_settings(_sound(tmp_path, agents=3, agent_backend="docker"))
    check_settings(_sound(tmp_path, agents=3))


@pytest.mark.parametrize("capacity, reserved_cpu, says", [
    ("cpu=lots", "0", "cannot parse amount 'lots'"),
    ("cpu=4", "0", "needs positive 'cpu' and 'mem'"),
    ("auto", "100000", "BERTH_AGENT_RESERVED_CPU='100000' leaves no CPU"),
])
def test_an_agent_capacity_the_agent_could_not_parse_is_refused(tmp_path: Path, capacity: str,
                                                                 reserved_cpu: str, says: str) -> None:
    with pytest.raises(StartRefused, match=says):
        check_settings(_sound(tmp_path, agent_capacity=capacity, agent_reserved_cpu=reserved_cpu))


# ------------------------------------------------------------------ up() refuses before it starts anything


@pytest.fixture
def nothing_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` fails the test if it gets as far as starting the infrastructure."""
    def infrastructure(*_: object) -> None:
        raise AssertionError("berth up started the infrastructure")

    monkeypatch.setattr(up_module, "infrastructure", infrastructure)
    monkeypatch.setattr(up_module, "choose_backend", lambda settings: (settings, None))


def _refused(settings: Settings) -> str:
    said: list[str] = []
    assert up_module.up(settings, say=said.append) == 1
    assert len(said) == 1 and said[0].startswith("berth up: "), said
    return said[0]


def test_up_refuses_a_data_dir_another_berth_up_holds_and_keeps_its_instance_file(
        tmp_path: Path, nothing_started: None) -> None:
    settings = _sound(tmp_path)
    settings.data_dir.mkdir()
    instance = settings.data_dir / "instance.json"
    instance.write_text('{"pid": 1}')
    with holding_data_dir(settings.data_dir):
        assert "Berth is already running on" in _refused(settings)
    assert instance.read_text() == '{"pid": 1}'


@pytest.mark.parametrize("change", [
    {"agents": 3, "agent_backend": "docker"},
    {"agent_capacity": "cpu=lots"},
], ids=["agents-docker", "capacity"])
def test_up_refuses_unsound_settings(tmp_path: Path, nothing_started: None, change: dict[str, Any]) -> None:
    _refused(_sound(tmp_path, **change))


def test_up_refuses_a_port_in_use(tmp_path: Path, nothing_started: None, port_in_use: int) -> None:
    assert "gateway cannot listen" in _refused(_sound(tmp_path, gateway_port=port_in_use))
