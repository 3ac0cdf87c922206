"""``berth run``'s program and its arguments, as ``python`` takes them, checked before anything is sent (the
endpoint here answers nothing: a command that went on says it cannot reach Berth)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli_input_size import berth


def test_code_takes_arguments_as_python_c_does() -> None:
    result = berth("run", "-c", "import sys; print(sys.argv)", "a", "--b")
    assert "cannot reach Berth" in result.stderr  # accepted: it went on to the (absent) gateway


def test_a_shell_command_takes_no_further_arguments() -> None:
    result = berth("run", "--exec", "echo hi", "extra")
    assert result.returncode == 2
    assert "--exec CMD takes no further arguments (the command holds its own): got 'extra'" in result.stderr


def test_a_missing_file_and_no_program_are_refused(tmp_path: Path) -> None:
    missing = berth("run", str(tmp_path / "nosuch.py"), "x")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    none = berth("run")
    assert none.returncode == 2 and "give exactly one of -c CODE, FILE or --exec CMD" in none.stderr
    both = berth("run", "-c", "1", "--exec", "x")
    assert both.returncode == 2 and "give exactly one of" in both.stderr
