"""Real NVIDIA GPUs, found with ``nvidia-smi`` (whole devices: the ``cuda.device`` slot).

Without ``nvidia-smi`` on the PATH, or when it fails, the plugin reports no devices and says so
in the log; the agent then offers no ``cuda.*`` slots.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from contracts.slots import SlotType
from services.agent.accelerators.base import AcceleratorError, AcceleratorPlugin, Device

__all__ = ["CudaPlugin", "parse_nvidia_smi"]

log = logging.getLogger(__name__)

QUERY = ("nvidia-smi", "--query-gpu=index,uuid,memory.total,name", "--format=csv,noheader,nounits")
TIMEOUT = 10.0
MIB = 1024**2


def parse_nvidia_smi(text: str) -> list[Device]:
    """Returns the devices of ``nvidia-smi --query-gpu=index,uuid,memory.total[,name]
    --format=csv,noheader[,nounits]`` output; memory is in MiB (``"81559 MiB"`` or ``"81559"``)."""
    devices = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3:
            raise AcceleratorError(f"nvidia-smi line {number}: expected index, uuid, memory.total; got {line!r}")
        index, uuid, memory = fields[:3]
        amount = memory.removesuffix("MiB").strip()
        if not index.isdigit() or not amount.isdigit():
            raise AcceleratorError(f"nvidia-smi line {number}: cannot read index/memory in {line!r}")
        devices.append(Device(device_id=index, uuid=uuid, memory=int(amount) * MIB,
                              model=", ".join(fields[3:])))
    return devices


class CudaPlugin(AcceleratorPlugin):
    """Whole NVIDIA GPUs of this node; ``command`` replaces the ``nvidia-smi`` query (tests)."""

    key = "cuda"
    slot_types = (("cuda.device", SlotType.COUNT),)

    def __init__(self, command: tuple[str, ...] = QUERY) -> None:
        self._command = command
        self._devices: list[Device] | None = None

    @classmethod
    def from_spec(cls, options: str) -> CudaPlugin:
        """Returns the plugin of the spec ``cuda`` (it takes no options)."""
        if options.strip():
            raise AcceleratorError(f"cuda accelerator takes no options, got {options!r}")
        return cls()

    async def list_devices(self) -> list[Device]:
        """Returns the GPUs ``nvidia-smi`` lists (queried once, then remembered)."""
        if self._devices is None:
            self._devices = await self._query()
        return list(self._devices)

    async def _query(self) -> list[Device]:
        if shutil.which(self._command[0]) is None:
            log.warning("cuda accelerator: %s not found; this node offers no GPUs", self._command[0])
            return []
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate()
        except (TimeoutError, OSError) as exc:
            log.warning("cuda accelerator: %s failed (%s); this node offers no GPUs", self._command[0], exc)
            return []
        if proc.returncode != 0:
            log.warning("cuda accelerator: %s exited %s: %s; this node offers no GPUs",
                        self._command[0], proc.returncode, err.decode(errors="replace").strip())
            return []
        return parse_nvidia_smi(out.decode(errors="replace"))
