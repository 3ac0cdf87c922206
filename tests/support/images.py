"""The kernel image for Docker tests: built once per machine by ``ops/images/build-python-image``.

Import the ``kernel_image`` fixture into a test module (``from tests.support.images import
kernel_image``). It returns the image tag (``$BERTH_TEST_KERNEL_IMAGE`` or
``berth/python:latest``), building it when missing (a minute or two, Debian mirror only) and
skipping with a clear reason when it cannot be built here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.infra import DOCKER_SKIP_REASON, docker_available

__all__ = ["BUILD_SCRIPT", "DEFAULT_KERNEL_IMAGE", "kernel_image"]

DEFAULT_KERNEL_IMAGE = "berth/python:latest"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "ops" / "images" / "build-python-image"
BUILD_TIMEOUT = 900


def _present(tag: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return result.returncode == 0


@pytest.fixture(scope="session")
def kernel_image() -> str:
    """Returns the tag of the Python kernel image, building it once when it is missing."""
    tag = os.environ.get("BERTH_TEST_KERNEL_IMAGE") or DEFAULT_KERNEL_IMAGE
    if not docker_available():
        pytest.skip(DOCKER_SKIP_REASON)
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed; the kernel image cannot be checked or built")
    if _present(tag):
        return tag
    if shutil.which("debootstrap") is None:
        pytest.skip(f"kernel image {tag} is missing and debootstrap is not installed to build it "
                    f"(apt-get install debootstrap, then {BUILD_SCRIPT.relative_to(BUILD_SCRIPT.parents[2])})")
    if os.geteuid() != 0:
        pytest.skip(f"kernel image {tag} is missing and building it needs root "
                    f"(run sudo {BUILD_SCRIPT} {tag})")
    result = subprocess.run([str(BUILD_SCRIPT), tag], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0 or not _present(tag):
        pytest.fail(f"building kernel image {tag} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return tag
