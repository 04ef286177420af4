"""`python -m psp_sandbox --host 127.0.0.1 --port 12111 [--data-dir DIR] [--idempotency-retention-s N]`"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

from psp_sandbox.app import start_sandbox
from psp_sandbox.idempotency import DEFAULT_RETENTION_S


def _positive_int(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m psp_sandbox", description="Stripe-compatible PSP sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--data-dir", default=None, help="keep the charge record in this directory")
    parser.add_argument(
        "--idempotency-retention-s",
        type=_positive_int,
        default=DEFAULT_RETENTION_S,
        help="how long answers are kept for idempotent replay, on the sandbox clock; POST /_sandbox/config "
        "changes it at runtime and POST /_sandbox/reset restores this value",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    sandbox = await start_sandbox(
        args.host, args.port, args.data_dir, idempotency_retention_s=args.idempotency_retention_s
    )
    print(f"psp-sandbox listening on {sandbox.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.close()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parse_args()))


if __name__ == "__main__":
    main()
