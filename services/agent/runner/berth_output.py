"""Berth kernel runner, a run's output: read from the run's pipes and sent as chunks, at a bounded rate.

Stdlib only, beside ``berth_server.py`` (which uses it). ``Output`` decodes UTF-8 incrementally and keeps the
rate's books; ``pump`` reads the pipes into it, and reads nothing while the rate says wait, so that the run's
writes block once its pipes are full, as a program's do on a slow terminal.
"""

from __future__ import annotations

import codecs
import os
import select
import time

OUTPUT_RATE = 1 << 20
"""Bytes per second a run's output streams at, after a first burst of as many: a run that writes more
waits for its writes (the runner stops reading its pipes, which fill), as a program on a slow terminal
does. Nothing is dropped: a training script's log streams for hours, and a flood costs the agent, the
bus and the gateway at most this much per run."""
READ_SIZE = 16 << 10


class Output:
    """Sends a run's output as chunks, decoding UTF-8 incrementally, at up to ``rate`` bytes per second
    (``wait`` says how long until more may go; a burst of ``rate`` bytes goes at once)."""

    def __init__(self, send, run_id: str, rate: int = OUTPUT_RATE, clock=time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"the output rate must be positive, got {rate}")
        self.send = send
        self.run_id = run_id
        self.rate = rate
        self.clock = clock
        self.allowance = float(rate)
        self.checked = clock()
        self.decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }

    def wait(self) -> float:
        """Seconds until the run's output may stream again (0.0: now); what was sent beyond the allowance
        is paid back at ``rate``."""
        self._refill()
        return 0.0 if self.allowance > 0 else (1 - self.allowance) / self.rate

    def feed(self, kind: str, data: bytes) -> None:
        self._refill()
        self.allowance -= len(data)
        text = self.decoders[kind].decode(data)
        if text:
            self.send({"run_id": self.run_id, "kind": kind, "data": text})

    def _refill(self) -> None:
        """Adds what the time since the last look earned, up to one second's worth."""
        now = self.clock()
        self.allowance = min(float(self.rate), self.allowance + (now - self.checked) * self.rate)
        self.checked = now

    def flush(self) -> None:
        for kind, decoder in self.decoders.items():
            text = decoder.decode(b"", final=True)
            if text:
                self.send({"run_id": self.run_id, "kind": kind, "data": text})

    def note(self, text: str) -> None:
        """Sends the runner's own line on stderr, after the run's output (at once, whatever the rate)."""
        self.flush()
        self.send({"run_id": self.run_id, "kind": "stderr", "data": text})


def pump(fds: dict, output: Output, until_fd=None, until=None) -> bytes:
    """Reads the file descriptors ``fds`` (fd → stream kind) into ``output`` until all reach
    EOF, or until ``until_fd`` has data (returned) or ``until()`` turns true; then drains
    what is already buffered in the pipes. While ``output`` must wait (its rate), ``fds`` are not
    read: the run's writes block once their pipes are full."""
    open_fds = dict(fds)
    watched = list(open_fds) + ([until_fd] if until_fd is not None else [])
    while open_fds or until_fd is not None:
        pause = output.wait()
        reading = ([until_fd] if until_fd is not None else []) if pause else watched
        ready, _, _ = select.select(reading, [], [], min(pause, 0.05) if pause else 0.05)
        for fd in ready:
            if fd == until_fd:
                result = os.read(fd, 65536)
                _drain(open_fds, output)
                return result
            data = os.read(fd, READ_SIZE)
            if data:
                output.feed(open_fds[fd], data)
            else:
                del open_fds[fd]
                watched.remove(fd)
        if until is not None and until():
            _drain(open_fds, output)
            return b""
    return b""


def _drain(open_fds: dict, output: Output) -> None:
    for fd, kind in open_fds.items():
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            output.feed(kind, data)
