"""The layer rules of DESIGN.md §1, checked on the source tree.

contracts imports nothing of ours; domain imports only contracts; projections
imports only contracts; services.application (the use cases) imports only contracts,
domain and services.common, never a service; services.common (infrastructure) and
services.sdk (the client SDK) import no service either. A service never imports another
service's internals (only services.common, services.application, services.sdk, or
itself). The CLI and the supervisor compose services and are the declared exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"contracts", "domain", "projections", "services"}
ALLOWED = {
    "contracts": {"contracts"},
    "domain": {"contracts", "domain"},
    "projections": {"contracts", "projections"},
}
COMPOSERS = {"supervisor", "cli"}
SHARED = {"common", "application", "sdk"}
"""The packages under services/ that every service may import."""
SHARED_MAY_IMPORT = {
    "application": {"contracts", "domain", "services.common", "services.application"},
    "common": {"contracts", "domain", "projections", "services.common"},
    "sdk": {"contracts", "services.sdk"},
}
"""What each shared package may import of ours (never a service)."""


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in OURS]


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_inner_layers_import_only_what_they_may(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.split(".")[0] not in ALLOWED[package]
    ]
    assert not offenders, "\n".join(offenders)


def test_services_do_not_import_each_others_internals() -> None:
    offenders = []
    for path in _modules("services"):
        parts = path.relative_to(ROOT / "services").parts
        if len(parts) < 2 or parts[0] in COMPOSERS or parts[0] in SHARED:
            continue
        own = parts[0]
        for name in _imports(path):
            bits = name.split(".")
            if bits[0] == "services" and len(bits) > 1 and bits[1] not in {own} | SHARED:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", sorted(SHARED_MAY_IMPORT))
def test_shared_service_packages_import_no_service(package: str) -> None:
    allowed = SHARED_MAY_IMPORT[package]
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(f"services/{package}")
        for name in _imports(path)
        if not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from services.gateway import app\nimport domain.session\n")
    assert _imports(bad) == ["services.gateway", "domain.session"]
