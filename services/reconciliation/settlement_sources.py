"""Where the nightly reconciliation gets a day's settlement from: the PSP sandbox's own daily file, or
Stripe's itemized reports through its Reporting API (which the sandbox also speaks).

A source yields the day's files one at a time, each spooled (memory up to a limit, then a temporary file)
and readable only until the next one is asked for, with the format the importer reads it in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from tempfile import SpooledTemporaryFile
from typing import BinaryIO, Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import stripe

from services.reconciliation.stripe_report_files import REPORT_COLUMNS

SPOOL_BYTES = 8 << 20  # small files stay in memory, big ones go to a temporary file
DOWNLOAD_TIMEOUT_S = 3600.0  # a whole file, however large
REQUEST_TIMEOUT_S = 30.0  # one API call
POLL_FIRST_S = 0.5
POLL_MAX_S = 30.0
STRIPE_FILES_ORIGIN = "https://files.stripe.com"  # where Stripe serves report files (File.url)


@dataclass(frozen=True)
class SettlementFile:
    stream: BinaryIO
    file_format: str  # a key of importing.PARSERS
    file_name: str


class SettlementSourceError(Exception):
    """The PSP did not give the day's settlement (a report run failed or took too long, an API error)."""


class SettlementNotYetAvailable(SettlementSourceError):
    """The PSP has not got the whole day's data yet (Stripe's reports lag hours behind): try later."""


class SettlementSource(Protocol):
    def files(self, day: date) -> AsyncGenerator[SettlementFile, None]:
        """The files that settle `day` (UTC); an async generator, to be closed (contextlib.aclosing)."""
        ...


async def _download(response: aiohttp.ClientResponse, spool: SpooledTemporaryFile[bytes]) -> None:
    """Streams the body into `spool`, rewound after."""
    response.raise_for_status()
    async for chunk in response.content.iter_chunked(1 << 16):
        spool.write(chunk)
    spool.seek(0)


class SandboxDailyFile:
    """The sandbox's `<psp_api_base>/_sandbox/settlements/<day>` (docs/SETTLEMENT_FILE.md), which only the
    sandbox serves."""

    def __init__(self, psp_api_base: str) -> None:
        self._base = psp_api_base.rstrip("/")

    async def files(self, day: date) -> AsyncGenerator[SettlementFile, None]:
        url = f"{self._base}/_sandbox/settlements/{day.isoformat()}"
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
        with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                await _download(response, spool)
            yield SettlementFile(cast(BinaryIO, spool), "sandbox", f"settlement_{day}.csv")


class StripeReportRun:
    """One report run per report type for [day 00:00 UTC, next day 00:00 UTC), with the official SDK: all
    are created first (Stripe runs them meanwhile), then each is polled with backoff until it has
    succeeded, and its file downloaded with the API key. `timeout_s` bounds the whole wait.

    The key is sent only to the API's own host or to Stripe's file host, whatever URL a run names.
    """

    def __init__(self, api_key: str, psp_api_base: str, report_types: Sequence[str], *, timeout_s: float) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        unknown = set(report_types) - set(REPORT_COLUMNS)
        if not report_types or unknown:
            raise ValueError(f"report_types must be some of {sorted(REPORT_COLUMNS)}, not {sorted(unknown)}")
        self._api_key = api_key
        self._base = psp_api_base.rstrip("/")
        self._report_types = tuple(report_types)
        self._timeout_s = timeout_s
        base = urlsplit(self._base)
        self._key_origins = {f"{base.scheme}://{base.netloc}", STRIPE_FILES_ORIGIN}

    def __repr__(self) -> str:
        return f"StripeReportRun({self._base!r}, {self._report_types!r})"  # never the API key

    async def files(self, day: date) -> AsyncGenerator[SettlementFile, None]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        interval = (int(start.timestamp()), int((start + timedelta(days=1)).timestamp()))
        deadline = time.monotonic() + self._timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
            client = stripe.StripeClient(
                self._api_key,
                base_addresses={"api": self._base, "files": self._base},
                http_client=stripe.AIOHTTPClient(session=session),
                max_network_retries=0,  # a failed call fails this night's attempt; the next check tries again
            )
            for report_type in self._report_types:
                await self._check_available(client, report_type, interval[1])
            # A lost answer leaves an orphan run behind, which costs nothing: no idempotency key of ours.
            runs = [await self._create(client, report_type, interval) for report_type in self._report_types]
            for run in runs:
                url = await self._file_url(client, run, deadline)
                with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
                    headers = {"Authorization": f"Bearer {self._api_key}"}
                    async with session.get(url, headers=headers, timeout=timeout) as response:
                        await _download(response, spool)
                    yield SettlementFile(cast(BinaryIO, spool), "stripe", f"{run.report_type}_{day}_{run.id}.csv")

    async def _check_available(self, client: stripe.StripeClient, report_type: str, interval_end: int) -> None:
        """Raises SettlementNotYetAvailable unless the report type has data up to `interval_end`: a run past
        `data_available_end` is refused, and a day reconciled from part of its data would report the rest
        as missing."""
        try:
            found = await client.v1.reporting.report_types.retrieve_async(report_type)
        except stripe.StripeError as error:
            raise SettlementSourceError(f"reading report type {report_type} failed: {error}") from error
        if found.data_available_end < interval_end:
            available = datetime.fromtimestamp(found.data_available_end, UTC).isoformat()
            raise SettlementNotYetAvailable(f"{report_type} has data up to {available} only")

    async def _create(
        self, client: stripe.StripeClient, report_type: str, interval: tuple[int, int]
    ) -> stripe.reporting.ReportRun:
        columns = list(REPORT_COLUMNS[report_type])
        try:
            return await client.v1.reporting.report_runs.create_async(
                params={
                    "report_type": report_type,
                    "parameters": {"interval_start": interval[0], "interval_end": interval[1], "columns": columns},
                }
            )
        except stripe.StripeError as error:
            raise SettlementSourceError(f"creating a {report_type} report run failed: {error}") from error

    async def _file_url(self, client: stripe.StripeClient, run: stripe.reporting.ReportRun, deadline: float) -> str:
        """Polls the run until it has succeeded; the URL of its file."""
        pause_s = POLL_FIRST_S
        while run.status == "pending":
            if time.monotonic() + pause_s > deadline:
                raise SettlementSourceError(
                    f"report run {run.id} ({run.report_type}) did not finish in {self._timeout_s:g} s"
                )
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, POLL_MAX_S)
            try:
                run = await client.v1.reporting.report_runs.retrieve_async(run.id)
            except stripe.StripeError as error:
                raise SettlementSourceError(f"retrieving report run {run.id} failed: {error}") from error
        if run.status != "succeeded":
            raise SettlementSourceError(f"report run {run.id} ({run.report_type}) {run.status}: {run.error}")
        url = run.result.url if run.result is not None else None
        if not url:
            raise SettlementSourceError(f"report run {run.id} succeeded without a file URL")
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" not in self._key_origins:
            raise SettlementSourceError(
                f"report run {run.id} names a file at {parts.netloc}, not the PSP's: not fetched"
            )
        return url
