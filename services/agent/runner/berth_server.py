"""Berth kernel runner, its server: runs code for the agent, in or next to a kernel, over the Unix
socket that ``berth_runner.py`` (the entry point, next to this file) already listens on.

Stdlib only (Python >= 3.9), no imports from Berth, so any image with ``python3`` runs it.
Newline-delimited JSON on the socket (ops ``ping``, ``run``, ``interrupt``, ``connect``; the protocol is in
README.md). Query mode runs Python in one persistent namespace held by the worker process
(``berth_worker.py``); batch mode runs ``/bin/sh -c`` commands in their own process group.
Output streams in chunks at a bounded rate (``--output-rate``): a run that writes faster waits, as on a slow terminal.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from berth_memory import MemoryCgroup
from berth_output import OUTPUT_RATE, Output, pump
from berth_tunnel import check_port, open_app, splice

INTERRUPT_GRACE = 2.0
INTERRUPTED = 130
"""Exit status of a run interrupted before it started, as the worker's for KeyboardInterrupt."""


# ------------------------------------------------------------------ kernels of code


class QueryKernel:
    """The persistent Python worker process holding the namespace of query runs."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.proc = None

    def _start(self) -> None:
        control_r, self.control_w = os.pipe()
        self.status_r, status_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        args = [sys.executable, self.script, "--control-fd", str(control_r), "--status-fd", str(status_w)]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=(control_r, status_w)
        )
        for fd in (control_r, status_w, out_w, err_w):
            os.close(fd)

    def _stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for fd in (self.control_w, self.status_r, self.out_r, self.err_r):
            os.close(fd)
        self.proc = None

    def run(self, request: dict, output: Output) -> int:
        """Runs one query in the namespace; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            self._stop()
            self._start()
        line = json.dumps({"code": request["code"], "stdin": request.get("stdin"), "argv": request.get("argv")}) + "\n"
        try:
            os.write(self.control_w, line.encode("utf-8"))
        except OSError:
            pass  # the worker died: reported below by its exit status
        status = pump({self.out_r: "stdout", self.err_r: "stderr"}, output, until_fd=self.status_r)
        if status:
            return int(json.loads(status.decode("utf-8"))["exit_code"])
        code = self.proc.wait()
        self._stop()
        output.note(f"berth: the Python worker {_ended(code)}; its variables are gone, the next run starts afresh\n")
        return 128 - code if code < 0 else code

    def warm(self) -> None:
        """Starts the worker ahead of the first run."""
        with self.lock:
            if self.proc is None:
                self._start()

    def interrupt(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        self._stop()


def _ended(code: int) -> str:
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


class BatchRun:
    """One shell command in its own process group."""

    def __init__(self, request: dict) -> None:
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", request["code"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        self.stdin = (request.get("stdin") or "").encode("utf-8")

    def run(self, output: Output) -> int:
        feeder = threading.Thread(target=self._feed, daemon=True)
        feeder.start()
        fds = {self.proc.stdout.fileno(): "stdout", self.proc.stderr.fileno(): "stderr"}
        pump(fds, output, until=lambda: self.proc.poll() is not None)
        code = self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return 128 - code if code < 0 else code

    def _feed(self) -> None:
        try:
            if self.stdin:
                self.proc.stdin.write(self.stdin)
            self.proc.stdin.close()
        except OSError:
            pass

    def interrupt(self) -> None:
        threading.Thread(target=self._escalate, daemon=True).start()

    def _escalate(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except OSError:
                return
            deadline = time.monotonic() + INTERRUPT_GRACE
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return
                time.sleep(0.02)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass


class Waiting:
    """A run accepted but not started yet (a query run waits for the one before it, a batch run for its thread): an
    interrupt now is kept, and the run then never starts (it was lost: the run started later, ran to its end, and a
    query run that never ends held the namespace for good, every later run waiting behind it)."""

    def __init__(self) -> None:
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True


def detach(request: dict, output: Output) -> int:
    """Starts a shell command that outlives its run (a service: Jupyter, TensorBoard): stdin from /dev/null,
    stdout and stderr the runner's own (the kernel's log, ``berth logs``), in the runner's process group (it
    ends with the kernel); reaped by a thread when it exits. The run ends at once, saying its pid."""
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", request["code"]], stdin=subprocess.DEVNULL)
    except OSError as exc:
        output.feed("stderr", f"cannot start /bin/sh: {exc}\n".encode())
        return 127
    threading.Thread(target=proc.wait, daemon=True).start()
    output.feed("stdout", f"started in the background (pid {proc.pid}); its output goes to the kernel's log\n".encode())
    return 0


def not_started(output: Output) -> int:
    """Ends a run interrupted before it started: a line on its stderr and 130, as Ctrl-C's KeyboardInterrupt."""
    output.note("berth: interrupted before it started: the run did not run\n")
    return INTERRUPTED


# ------------------------------------------------------------------ server


class Runner:
    """Serves connections: starts runs, streams their output, forwards interrupts."""

    def __init__(self, output_rate: int = OUTPUT_RATE, cgroup: str | None = None) -> None:
        self.output_rate = output_rate
        self.memory = MemoryCgroup(cgroup)
        self.query = QueryKernel(os.path.join(os.path.dirname(os.path.abspath(__file__)), "berth_worker.py"))
        self.runs = {}
        self.runs_lock = threading.Lock()

    def serve_connection(self, conn: socket.socket) -> None:
        write_lock = threading.Lock()

        def send(message: dict) -> None:
            data = (json.dumps(message) + "\n").encode("utf-8")
            with write_lock:
                try:
                    conn.sendall(data)
                except OSError:
                    pass  # the client went away; the run goes on

        reader = conn.makefile("r", encoding="utf-8")
        app = None
        try:
            for line in reader:
                if line.strip():
                    app = self.handle(line, send)
                    if app is not None:
                        break
        except (OSError, ValueError):
            pass
        finally:
            reader.close()
        try:
            if app is not None:  # the agent sends nothing more until it reads "connected": nothing is buffered
                splice(conn, app)
        finally:
            conn.close()

    def handle(self, line: str, send):
        """Answers one request; returns the app's connection when it was a ``connect`` that succeeded
        (the connection then carries the app's bytes)."""
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            send({"kind": "error", "message": "expected a JSON object with an 'op'"})
            return
        if op == "ping":
            send({"op": "pong", "pid": os.getpid()})
        elif op == "interrupt":
            send({"op": "interrupted", "run_id": request.get("run_id"), "ok": self.interrupt(request.get("run_id"))})
        elif op == "run":
            error = self.check_run(request)
            if error:
                send({"kind": "error", "run_id": request.get("run_id"), "message": error})
            else:
                threading.Thread(target=self.run, args=(request, send), daemon=True).start()
        elif op == "connect":
            return self.connect(request, send)
        else:
            send({"kind": "error", "message": f"unknown op {op!r} (known: ping, run, interrupt, connect)"})
        return None

    @staticmethod
    def connect(request: dict, send):
        """Connects to the app on the kernel's loopback at the request's port; returns it, or None."""
        port, error = check_port(request)
        if error is None:
            try:
                app = open_app(port)
            except OSError as exc:
                error = str(exc)
            else:
                send({"op": "connected", "port": port})
                return app
        send({"kind": "error", "message": error})
        return None

    def check_run(self, request: dict) -> str | None:
        run_id = request.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            return "a run needs a run_id"
        if request.get("mode", "query") not in ("query", "batch"):
            return f"unknown mode {request.get('mode')!r} (known: query, batch)"
        if not isinstance(request.get("code"), str):
            return "a run needs code (a string)"
        if request.get("stdin") is not None and not isinstance(request["stdin"], str):
            return "stdin must be a string"
        argv = request.get("argv")
        if argv is not None and not (isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)):
            return "argv must be a list of strings"
        if request.get("detach", False) not in (True, False):
            return "detach must be true or false"
        if request.get("detach") and request.get("mode", "query") != "batch":
            return "detach is for a shell command (mode batch)"
        with self.runs_lock:
            if run_id in self.runs:
                return f"run {run_id} is already running"
            self.runs[run_id] = Waiting()
        return None

    def run(self, request: dict, send) -> None:
        run_id = request["run_id"]
        output = Output(send, run_id, self.output_rate)
        started = time.monotonic()
        oom_kills = None
        try:
            if request.get("detach"):
                exit_code = detach(request, output)
            elif request.get("mode", "query") == "batch":
                oom_kills = self.memory.oom_kills()
                try:
                    batch = self._start(run_id, lambda: BatchRun(request))
                except OSError as exc:
                    output.feed("stderr", f"cannot start /bin/sh: {exc}\n".encode())
                    exit_code = 127
                else:
                    exit_code = batch.run(output) if batch else not_started(output)
            else:
                with self.query.lock:
                    oom_kills = self.memory.oom_kills()  # once the run before it ended
                    query = self._start(run_id, lambda: self.query)
                    exit_code = query.run(request, output) if query else not_started(output)
        except Exception as exc:  # noqa: BLE001 - a runner fault ends the run, never the runner
            output.feed("stderr", f"berth runner error: {exc!r}\n".encode())
            exit_code = 1
        finally:
            with self.runs_lock:
                self.runs.pop(run_id, None)
        output.flush()
        note = self.memory.killed_note(oom_kills)
        if note:
            output.note(note)
        duration_ms = int((time.monotonic() - started) * 1000)
        send({"run_id": run_id, "kind": "done", "exit_code": exit_code, "duration_ms": duration_ms})

    def _start(self, run_id: str, make):
        """Returns ``make()``, the run's target from now on (interrupts reach it), made under the lock that
        interrupts take: an interrupt lands on the ``Waiting`` before or on the target after, never between. None,
        making nothing, when the run was interrupted while it waited."""
        with self.runs_lock:
            waiting = self.runs.get(run_id)
            if isinstance(waiting, Waiting) and waiting.interrupted:
                return None
            target = self.runs[run_id] = make()
            return target

    def interrupt(self, run_id) -> bool:
        with self.runs_lock:
            target = self.runs.get(run_id)
        if target is None:
            return False
        target.interrupt()
        return True

    def shutdown(self) -> None:
        with self.runs_lock:
            targets = [t for t in self.runs.values() if isinstance(t, BatchRun)]
        for target in targets:
            target.kill()
        self.query.close()


def serve(listening, socket_path: str, output_rate: int | None = None, stops: list | None = None,
          cgroup: str | None = None) -> None:
    """Serves the connections of ``listening`` (a listening ``_socket.socket`` bound at
    ``socket_path``) until SIGTERM or SIGINT, then raises ``SystemExit(128 + signal)``; removes the
    socket on the way out. ``stops``: the stop signals received so far, appended to by the caller's
    handler (a signal received before this started ends it at once); this one's handler appends there too."""
    server = socket.socket(fileno=listening.detach())
    runner = Runner(OUTPUT_RATE if output_rate is None else output_rate, cgroup)
    stops = [] if stops is None else stops

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stops.append(signum)  # acted on by the loop below: an exception raised here could be dropped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The handler runs on the main thread, but a signal the kernel hands to a connection thread
    # would not interrupt select(): the wakeup pipe makes it return, whichever thread got it.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    try:
        runner.query.warm()
        while not stops:
            readable, _, _ = select.select([server, wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 512)
            if server not in readable:
                continue
            conn, _ = server.accept()
            threading.Thread(target=runner.serve_connection, args=(conn,), daemon=True).start()
        raise SystemExit(128 + stops[0])
    finally:
        runner.shutdown()
        server.close()
