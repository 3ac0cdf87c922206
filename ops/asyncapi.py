#!/usr/bin/env python3
"""Writes the AsyncAPI document of Berth's event flow to contracts/asyncapi.json.

Usage: .venv/bin/python ops/asyncapi.py [--check]
The document is generated from each service's flow table (services/<name>/flow.py) and the
contract classes; ``--check`` exits 1 when the committed document is stale (as the test does).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.agent.flow import FLOW as AGENT  # noqa: E402
from services.common.flow_asyncapi import asyncapi_document, render  # noqa: E402
from services.controller.flow import FLOW as CONTROLLER  # noqa: E402
from services.scheduler.flow import FLOW as SCHEDULER  # noqa: E402
from services.storage.flow import FLOW as STORAGE  # noqa: E402

FLOWS = {"agent": AGENT, "controller": CONTROLLER, "scheduler": SCHEDULER, "storage": STORAGE}
"""Every service's flow table (the services whose consumption is declared on faststream)."""
DOCUMENT = ROOT / "contracts" / "asyncapi.json"


def main(argv: list[str]) -> int:
    text = render(asyncapi_document(FLOWS))
    if "--check" in argv:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is stale: run .venv/bin/python ops/asyncapi.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
