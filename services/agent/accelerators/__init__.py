"""Accelerator plugins by name, and the ``BERTH_AGENT_ACCELERATORS`` setting that picks them.

The setting is a comma list of specs ``name[:options]``, e.g. ``mock:cuda.device=4`` or ``cuda``;
empty means none. Two plugins may not offer the same key.
"""

from __future__ import annotations

from collections.abc import Callable

from services.agent.accelerators.base import AcceleratorError, AcceleratorPlugin, Device
from services.agent.accelerators.cuda import CudaPlugin
from services.agent.accelerators.mock import MockPlugin

__all__ = ["PLUGINS", "AcceleratorError", "AcceleratorPlugin", "Device", "build_plugins"]

PLUGINS: dict[str, Callable[[str], AcceleratorPlugin]] = {
    "mock": MockPlugin.from_spec,
    "cuda": CudaPlugin.from_spec,
}
"""Plugin factories by name; each takes the options after ``name:``."""


def build_plugins(text: str) -> list[AcceleratorPlugin]:
    """Returns the plugins of ``"mock:cuda.device=4"``-style specs; raises ``AcceleratorError``
    for an unknown name, bad options or two plugins with the same key."""
    plugins: list[AcceleratorPlugin] = []
    for spec in filter(None, (part.strip() for part in text.split(","))):
        name, _, options = spec.partition(":")
        factory = PLUGINS.get(name.strip())
        if factory is None:
            raise AcceleratorError(f"unknown accelerator plugin {name.strip()!r} in {text!r} "
                                   f"(available: {', '.join(sorted(PLUGINS))})")
        plugin = factory(options)
        if any(p.key == plugin.key for p in plugins):
            raise AcceleratorError(f"accelerators {text!r}: two plugins offer {plugin.key!r}")
        plugins.append(plugin)
    return plugins
