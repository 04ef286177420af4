"""`python -m psp_sandbox --host 127.0.0.1 --port 12111 [--data-dir DIR] [--idempotency-retention-s N]
[--webhook-url URL --webhook-secret whsec_... [--webhook-secret whsec_...]]`"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from psp_sandbox.app import start_sandbox
from psp_sandbox.idempotency import DEFAULT_RETENTION_S
from psp_sandbox.webhook_settings import WebhookConfigError, WebhookSettings, check_secrets, check_url

SECRET_ENV = "PSP_SANDBOX_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret


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
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="POST a signed Stripe-style event here for every charge, refund and payout (retried until answered 2xx)",
    )
    parser.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        help="signing secret (whsec_...); give it twice while rolling a secret, and each event carries one v1 "
        f"signature per secret. Without this flag, ${SECRET_ENV} is used (a secret on the command line is "
        "visible to every local user)",
    )
    args = parser.parse_args(argv)
    from_env = os.environ.get(SECRET_ENV, "")
    secrets = args.webhook_secret or ([from_env] if from_env and args.webhook_url else [])
    try:
        args.webhooks = _webhook_settings(args.webhook_url, secrets)
    except WebhookConfigError as error:
        parser.error(str(error))
    return args


def _webhook_settings(url: str | None, secrets: list[str]) -> WebhookSettings | None:
    if url is None:
        if secrets:
            raise WebhookConfigError("--webhook-secret needs --webhook-url")
        return None
    if not secrets:
        raise WebhookConfigError(f"--webhook-url needs --webhook-secret (or ${SECRET_ENV}): events are always signed")
    return WebhookSettings(url=check_url(url), secrets=check_secrets(secrets))


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    sandbox = await start_sandbox(
        args.host,
        args.port,
        args.data_dir,
        idempotency_retention_s=args.idempotency_retention_s,
        webhooks=args.webhooks,
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
