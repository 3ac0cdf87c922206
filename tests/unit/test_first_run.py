"""What `berth up` decides before it starts anything (no Docker needed): the agent's backend and
what it says about it, the capacity it shows, which images it builds, where it builds them from."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiodocker.exceptions import DockerError

from services.agent.backends.docker import kernel_image
from services.agent.backends.docker.kernel_image import ImageBuildError, buildable, ensure_kernel_image, split_tag
from services.agent.backends.docker.probe import docker_problem, no_docker_message
from services.agent.backends.docker.rootfs import (
    _PER_PACKAGE,
    DEFAULT_MIRROR,
    ROOTFS_RECIPE,
    add_python_alias,
    debian_mirror,
    debian_suite,
    rootfs_tarball,
)
from services.agent.main import build_backend
from services.common.settings import Settings
from services.supervisor.runtime import StartRefused, choose_backend, describe_capacity


@pytest.mark.parametrize("backend", ["auto", "docker"])
def test_without_docker_berth_up_refuses_with_one_line_saying_how_to_get_it(backend: str) -> None:
    with pytest.raises(StartRefused) as refused:
        choose_backend(Settings(agent_backend=backend), problem=lambda: "/var/run/docker.sock does not exist")
    line = str(refused.value)
    assert "\n" not in line
    assert "no Docker engine answers (/var/run/docker.sock does not exist)" in line
    assert "apt-get install docker.io" in line and "--backend process" in line
    assert "would run tenant code unisolated, as the operator" in line


def test_a_socket_it_may_not_use_says_how_to_join_the_docker_group() -> None:
    assert "usermod -aG docker" in no_docker_message("/var/run/docker.sock: permission denied")


def test_with_docker_auto_is_docker_and_says_nothing_more() -> None:
    settings, note = choose_backend(Settings(agent_backend="auto"), problem=lambda: None)
    assert (settings.agent_backend, note) == ("docker", None)


def test_the_process_backend_says_what_it_means() -> None:
    settings, note = choose_backend(Settings(agent_backend="process"), problem=lambda: "never asked")
    assert settings.agent_backend == "process"
    assert note is not None and "UNISOLATED" in note and "on this host" in note and "as user" in note


def test_the_simulated_backend_says_it_runs_nothing() -> None:
    _, note = choose_backend(Settings(agent_backend="simulated"), problem=lambda: "never asked")
    assert note is not None and "run nothing" in note


def test_the_agent_alone_never_falls_back_to_running_code_unisolated(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert docker_problem() == f"{tmp_path}/docker.sock does not exist"
    with pytest.raises(ValueError, match="no Docker engine answers") as refused:
        build_backend(Settings(agent_backend="auto", data_dir=tmp_path))
    assert "`--backend process` (BERTH_AGENT_BACKEND=process) would run tenant code unisolated, as the operator" \
        in str(refused.value)


def test_a_docker_host_that_is_not_a_unix_socket_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert docker_problem() == "DOCKER_HOST=tcp://10.0.0.1:2375 is not a Unix socket (unix://...)"


def test_capacity_auto_is_shown_as_detected() -> None:
    assert describe_capacity(Settings(agent_capacity="cpu=4,mem=8g")) == "cpu=4,mem=8g"
    shown = describe_capacity(Settings(agent_capacity="auto"))
    assert shown.startswith("auto (cpu=") and shown.endswith("g detected)")


@pytest.mark.parametrize(("image", "parts", "built"), [
    ("berth/python:latest", ("berth/python", "latest"), True),
    ("berth/python:e2e-1a2b", ("berth/python", "e2e-1a2b"), True),
    ("berth/python", ("berth/python", "latest"), True),
    ("python:3.12", ("python", "3.12"), False),
    ("registry.local:5000/berth/python", ("registry.local:5000/berth/python", "latest"), False),
    ("registry.local:5000/berth/python:1", ("registry.local:5000/berth/python", "1"), False),
])
def test_only_the_offline_kernel_image_is_built(image: str, parts: tuple[str, str], built: bool) -> None:
    assert split_tag(image) == parts
    assert buildable(image) is built


def test_the_mirror_is_this_machines_debian_mirror() -> None:
    deb822 = ("Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
              "URIs: http://mirror.example/debian\nSuites: bookworm\n\n"
              "URIs: http://mirror.example/debian-security\n")
    assert debian_mirror({}, [deb822]) == "http://mirror.example/debian"
    legacy = "# deb http://commented.example/debian bookworm main\ndeb https://m.example/debian/ bookworm main\n"
    assert debian_mirror({}, [legacy]) == "https://m.example/debian/"
    assert debian_mirror({}, ["deb http://security.debian.org/debian-security bookworm-security main"]) == DEFAULT_MIRROR
    assert debian_mirror({"BERTH_DEBIAN_MIRROR": "http://own/debian"}, [legacy]) == "http://own/debian"
    assert debian_suite({}) == "bookworm" and debian_suite({"BERTH_IMAGE_SUITE": "trixie"}) == "trixie"


def test_the_rootfs_is_cached_per_suite_architecture_and_recipe(tmp_path: Path) -> None:
    assert rootfs_tarball(tmp_path, "bookworm").name.startswith("kernel-rootfs-bookworm-")
    assert rootfs_tarball(tmp_path, "bookworm").name.endswith(f"-r{ROOTFS_RECIPE}.tar")
    assert rootfs_tarball(tmp_path, "bookworm").parent == tmp_path


def test_the_rootfs_names_python3_python_too(tmp_path: Path) -> None:
    bin_dir = tmp_path / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3.11").write_text("")
    (bin_dir / "python3").symlink_to("python3.11")
    add_python_alias(tmp_path)
    assert os.readlink(bin_dir / "python") == "python3" and (bin_dir / "python").resolve() == bin_dir / "python3.11"
    add_python_alias(tmp_path)  # again: left as it is
    assert os.readlink(bin_dir / "python") == "python3"


def test_the_rootfs_keeps_its_own_python_and_names_none_without_python3(tmp_path: Path) -> None:
    bin_dir = tmp_path / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    add_python_alias(tmp_path)
    assert not (bin_dir / "python").is_symlink()
    (bin_dir / "python3").write_text("")
    (bin_dir / "python").write_text("its own")
    add_python_alias(tmp_path)
    assert (bin_dir / "python").read_text() == "its own"


@pytest.mark.parametrize(("line", "per_package"), [
    ("I: Retrieving libacl1 2.3.1-3", True),
    ("I: Validating libc6 2.36-9+deb12u10", True),
    ("I: Unpacking libreadline8:amd64...", True),
    ("I: Configuring python3...", True),
    ("I: Retrieving Release", False),
    ("I: Configuring required packages...", False),
    ("I: Unpacking the base system...", False),
    ("I: Base system installed successfully.", False),
])
def test_debootstrap_phases_are_shown_and_package_lines_thinned(line: str, per_package: bool) -> None:
    assert (_PER_PACKAGE.fullmatch(line) is not None) is per_package


def test_settings_name_the_default_image_and_the_cache(tmp_path: Path) -> None:
    settings = Settings.from_env({"BERTH_DEFAULT_IMAGE": "berth/python:e2e", "BERTH_CACHE_DIR": str(tmp_path)})
    assert (settings.default_image, settings.cache_dir) == ("berth/python:e2e", tmp_path)
    assert Settings.from_env({}).default_image == "berth/python:latest"


async def test_a_missing_image_that_cannot_be_built_here_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    class Images:
        async def inspect(self, image: str) -> dict:
            raise DockerError(404, f"No such image: {image}")

    monkeypatch.setattr(kernel_image, "cannot_build", lambda: "building it needs root")
    with pytest.raises(ImageBuildError) as refused:
        await ensure_kernel_image(SimpleNamespace(images=Images()), "berth/python:x", cache_dir=tmp_path)  # type: ignore[arg-type]
    message = str(refused.value)
    assert message.startswith("building it needs root; build it once with `sudo ")
    assert "ops/images/build-python-image berth/python:x`" in message and "BERTH_DEFAULT_IMAGE" in message
