"""Which registry an image reference names (as Docker splits it) and what ``BERTH_IMAGE_REGISTRIES`` allows."""

from __future__ import annotations

import pytest

from services.agent.backends.docker.registries import RegistryPolicy, registry_of


@pytest.mark.parametrize(("image", "registry"), [
    ("python", "docker.io"),
    ("berth/python:latest", "docker.io"),
    ("library/python@sha256:" + "a" * 64, "docker.io"),
    ("docker.io/library/python", "docker.io"),
    ("index.docker.io/x/y", "docker.io"),
    ("registry-1.docker.io/x/y:1", "docker.io"),
    ("ghcr.io/org/app:1.0", "ghcr.io"),
    ("localhost/app", "localhost"),
    ("localhost:5000/app", "localhost:5000"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000"),
    ("10.0.0.5/app", "10.0.0.5"),
    ("Registry/app", "registry"),  # not lower case: Docker takes it for a host
    ("team/sub/app", "docker.io"),
])
def test_the_registry_of_an_image_is_dockers(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_the_default_allows_docker_hub_only() -> None:
    policy = RegistryPolicy()
    assert policy.allows("python:3.12") and policy.allows("docker.io/library/python")
    for image in ("127.0.0.1:8080/x", "169.254.169.254/latest", "localhost/x", "ghcr.io/a/b", "Evil/x"):
        assert not policy.allows(image), image
    assert "registry '169.254.169.254' is not one the agent pulls from (BERTH_IMAGE_REGISTRIES: docker.io)" in (
        policy.refusal("169.254.169.254/latest"))


def test_a_list_allows_its_hosts_and_star_any() -> None:
    policy = RegistryPolicy(" GHCR.io , registry.local:5000 ")
    assert policy.allows("ghcr.io/a/b") and policy.allows("registry.local:5000/team/app:1")
    assert not policy.allows("python") and not policy.allows("registry.local/team/app")  # another port
    assert RegistryPolicy("*").allows("10.0.0.5:5000/x")
    nothing = RegistryPolicy("")
    assert not nothing.allows("python") and "BERTH_IMAGE_REGISTRIES: none" in nothing.refusal("python")


@pytest.mark.parametrize("setting", ["docker.io/library", "a b"])
def test_a_malformed_list_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="BERTH_IMAGE_REGISTRIES"):
        RegistryPolicy(setting)
