"""``berth run`` and ``berth exec`` refuse code and stdin larger than one execution takes before
sending anything: no session is asked for (the endpoint here answers nothing, so a command that tried
would fail differently), and the message says the limit and where larger data goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from contracts.execution import MAX_EXEC_INPUT

NOWHERE = {"BERTH_ENDPOINT": "http://127.0.0.1:9/", "BERTH_ACCESS_KEY": "AKIA", "BERTH_SECRET_KEY": "x"}


def berth(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")} | NOWHERE
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_file_too_large_to_run_is_refused_before_a_session_is_asked_for(tmp_path: Path) -> None:
    script = tmp_path / "big.py"
    script.write_text("x = 1\n" * (MAX_EXEC_INPUT // 6 + 1))
    result = berth("run", str(script))
    assert result.returncode == 1
    assert f"an execution takes at most {MAX_EXEC_INPUT:,}" in result.stderr and "--mount" in result.stderr
    assert "requested" not in result.stderr and "cannot reach" not in result.stderr


def test_stdin_counts_with_the_code(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("a" * MAX_EXEC_INPUT)
    result = berth("exec", "s1", "print(1)", "--stdin", str(data))
    assert result.returncode == 1 and f"{MAX_EXEC_INPUT + 8:,} bytes together" in result.stderr
    within = berth("exec", "s1", "print(1)")
    assert "cannot reach Berth" in within.stderr  # within the limit: it went on to the (absent) gateway
