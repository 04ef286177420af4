"""Runs a module as a child that dies with the process that started it.

`python -m services.cli.child PARENT_PID MODULE [ARG ...]` asks the kernel for SIGTERM when its parent
dies (Linux), then runs MODULE as `python -m MODULE ARG ...` would. Done here, after exec, rather than
by a `preexec_fn` in the parent: a `preexec_fn` forces a full fork(), and forking a process that uses
gRPC (the stack's supervisor polls health over gRPC) restarts gRPC's poller in the child, which can
abort the child before it reaches exec (grpc/grpc#43055). Without it, subprocess uses vfork.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent_pid, module, *args = sys.argv[1:]
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent_pid):
        # The parent died before the request took effect: nobody is left to stop this process.
        sys.exit(f"{module}: the process that started it has already exited")
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
