"""A kernel id becomes a path on the agent's host only when it is a plain token: ``../x`` (from a
forged logs request, say) never names a file outside the kernel's own directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.agent.backends.docker.spec import KernelPaths
from services.agent.backends.process import ProcessBackend

BAD = ["../x", "../../etc/passwd", "a/b", "", ".", "..", "k\n"]


@pytest.mark.parametrize("kernel_id", BAD)
def test_a_kernel_id_that_is_no_plain_token_never_becomes_a_path(tmp_path: Path, kernel_id: str) -> None:
    with pytest.raises(ValueError, match="invalid kernel id"):
        KernelPaths.of(tmp_path, kernel_id)
    with pytest.raises(ValueError, match="invalid kernel id"):
        ProcessBackend(tmp_path).kernel_dir(kernel_id)


async def test_the_logs_of_a_forged_id_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await ProcessBackend(tmp_path).logs("../../runner")


def test_a_plain_id_stays_under_kernels(tmp_path: Path) -> None:
    assert KernelPaths.of(tmp_path, "s1-k0").root == tmp_path.absolute() / "kernels" / "s1-k0"
