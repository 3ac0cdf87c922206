"""The registries an agent may pull kernel images from (``BERTH_IMAGE_REGISTRIES``).

A session names its image, and a user names the session: without a list, any user could have the node's
Docker engine connect to any host and port they wrote in front of an image name (``10.0.0.5:22/x``,
``169.254.169.254/x``, a loopback service: the engine even falls back to plain HTTP there), and read in the
session's failure which of them answered. An image already on the node needs no registry and is always
allowed; a missing one is pulled only from a registry on the list.
"""

from __future__ import annotations

__all__ = ["ANY_REGISTRY", "DOCKER_HUB", "RegistryPolicy", "registry_of"]

DOCKER_HUB = "docker.io"
ANY_REGISTRY = "*"
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})


def registry_of(image: str) -> str:
    """Returns the registry Docker would pull ``image`` from, as Docker splits a reference: the part
    before the first ``/`` when it has a ``.`` or a ``:``, is ``localhost`` or is not lower case
    (lower-cased, Docker Hub's aliases as ``docker.io``), else Docker Hub."""
    first, slash, _ = image.partition("/")
    if not slash or not (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        return DOCKER_HUB
    return _canonical(first)


def _canonical(host: str) -> str:
    """A registry host as compared: lower case, Docker Hub's aliases as ``docker.io``."""
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


class RegistryPolicy:
    """The registries of ``BERTH_IMAGE_REGISTRIES``: comma-separated hosts (with their port where not
    443), ``docker.io`` for Docker Hub, ``*`` for any."""

    def __init__(self, setting: str = DOCKER_HUB) -> None:
        names = [name.strip().lower() for name in setting.split(",") if name.strip()]
        for name in names:
            if name != ANY_REGISTRY and ("/" in name or any(c.isspace() for c in name)):
                raise ValueError(f"BERTH_IMAGE_REGISTRIES: {name!r} is not a registry host[:port] (or '*')")
        self._any = ANY_REGISTRY in names
        self._hosts = frozenset(_canonical(name) for name in names)

    def allows(self, image: str) -> bool:
        """Whether ``image`` may be pulled."""
        return self._any or registry_of(image) in self._hosts

    def refusal(self, image: str) -> str:
        """Says why ``image`` is not pulled, for the session's failure."""
        allowed = "none" if not self._hosts else ", ".join(sorted(self._hosts))
        return (f"image {image!r} is not on this agent, and its registry {registry_of(image)!r} is not one the agent "
                f"pulls from (BERTH_IMAGE_REGISTRIES: {allowed}): use an image of those, or ask an admin to allow "
                "the registry or to put the image on the agent")
