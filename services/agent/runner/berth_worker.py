"""The query worker of the Berth kernel runner: one long-lived child process per kernel that
holds the persistent Python namespace (stdlib only, no imports from Berth).

The runner (``berth_runner.py`` next to this file) starts it with its real file descriptors
1 and 2 as pipes, and two more pipes: it reads one JSON request per line on ``--control-fd``
and answers ``{"exit_code": n}`` per run on ``--status-fd``. SIGINT during a run raises
KeyboardInterrupt (exit code 130).

Each run's code is compiled as ``<run N>`` (N counts the kernel's runs from 1) and kept in
``linecache``, so that a traceback shows the lines it passes through, those of a function an earlier
run defined included, as IPython's cells do; the worker's own frames are left out of it.

``sys.argv`` is ``[""]`` (as at Python's interactive prompt), or a run's ``argv`` from that run on
(``berth run FILE ARGS...`` gives ``[FILE, *ARGS]``, as ``python FILE ARGS...`` would); such a run is
compiled as ``argv[0]`` (its traceback says ``File "train.py", line 6``) and sets ``__file__`` to it.
"""

from __future__ import annotations

import argparse
import io
import json
import linecache
import os
import signal
import sys
import traceback


def worker_main(control_fd: int, status_fd: int) -> None:
    """Serves query runs for the runner: reads one JSON request per line on ``control_fd``,
    runs it in the persistent namespace, writes ``{"exit_code": n}`` on ``status_fd``."""
    import builtins

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    sys.argv = [""]  # as Python's interactive prompt: not the worker's own options (argparse would read them)
    state = {"running": False}
    runs = 0

    def on_sigint(signum, frame):  # noqa: ARG001 - signal handler signature
        if state["running"]:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # whole lines reach the runner as they are printed
    control = os.fdopen(control_fd, "r", encoding="utf-8")
    status = os.fdopen(status_fd, "w", encoding="utf-8")
    while True:
        try:
            line = control.readline()
            if not line:
                return
            request = json.loads(line)
            sys.stdin = io.StringIO(request.get("stdin") or "")
            runs += 1
            filename = f"<run {runs}>"
            if request.get("argv") is not None:
                sys.argv = list(request["argv"])
                if sys.argv and sys.argv[0]:  # a script's run: named as Python names it
                    filename = namespace["__file__"] = sys.argv[0]
            state["running"] = True
            try:
                exit_code = _run_query(request["code"], namespace, filename)
            finally:
                state["running"] = False
        except KeyboardInterrupt:
            exit_code = 130
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - user code may have replaced or closed it
                pass
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        status.write(json.dumps({"exit_code": exit_code}) + "\n")
        status.flush()


def _run_query(code: str, namespace: dict, filename: str = "<run>") -> int:
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)  # mtime None: kept
    try:
        exec(compile(code, filename, "exec"), namespace)  # noqa: S102 - running user code is the point
        return 0
    except SystemExit as exc:
        return _exit_code_of(exc)
    except KeyboardInterrupt:
        _print_traceback()
        return 130
    except BaseException:  # noqa: BLE001 - any error of user code ends the run with 1
        _print_traceback()
        return 1


def _exit_code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _print_traceback() -> None:
    """Prints the exception being handled, and those it was raised from, without the worker's frames
    (``_run_query``'s own, and the SIGINT handler's that a KeyboardInterrupt was raised in)."""
    value = sys.exc_info()[1]
    seen = set()
    exc = value
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = _without_worker_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    traceback.print_exception(type(value), value, value.__traceback__ if value is not None else None)


def _without_worker_frames(tb):
    """Returns the traceback ``tb`` with the frames of this file unlinked (None when none is left)."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != __file__:
            kept.append(tb)
        tb = tb.tb_next
    for current, following in zip(kept, kept[1:] + [None]):
        current.tb_next = following
    return kept[0] if kept else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Berth kernel runner: query worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    args = parser.parse_args(argv)
    worker_main(args.control_fd, args.status_fd)


if __name__ == "__main__":
    main()
