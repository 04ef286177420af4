"""The sandbox's daily settlement file over HTTP, read back with Settle's parser, with each discrepancy switch."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from psp_sandbox.app import RunningSandbox
from psp_sandbox.settlement import processing_fee_minor
from services.reconciliation.parsing.model import FileRejected, LineKind, Quarantined, SettlementLine
from services.reconciliation.parsing.sandbox import SandboxSettlementParser

AUTH = {"Authorization": "Bearer sk_test_sandbox"}
DAY_S = 86_400


@dataclass(frozen=True)
class Day:
    """What the test did on the sandbox, all on one sandbox day."""

    day: date
    charge_usd: str  # pi_ of 1250 USD, order-a, partly refunded
    charge_usd_2: str  # pi_ of 2000 USD, order-b
    charge_eur: str  # pi_ of 990 EUR, order-c
    refund: str  # re_ of 250 USD from charge_usd, refund-a
    payout: str  # po_ of 5000 USD, payout-1


async def _post(http: aiohttp.ClientSession, url: str, form: dict[str, str], key: str) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=form, headers=AUTH | {"Idempotency-Key": key}) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def _charge(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, order_id: str, amount: int, currency: str = "usd"
) -> tuple[int, dict[str, Any]]:
    form = {"amount": str(amount), "currency": currency, "confirm": "true", "payment_method_types[0]": "card"}
    form |= {"payment_method": "pm_card_visa", "metadata[payment_order_id]": order_id}
    if order_id.startswith("declined"):
        form["payment_method"] = "pm_card_chargeDeclined"
    return await _post(http, f"{sandbox.url}/v1/payment_intents", form, order_id)


@pytest_asyncio.fixture
async def today(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> Day:
    async with http.get(f"{sandbox.url}/_sandbox/clock") as response:
        now_s = (await response.json())["now"]
    if now_s % DAY_S > DAY_S - 300:
        # Everything must happen on one sandbox day: step past midnight rather than straddle it.
        async with http.post(f"{sandbox.url}/_sandbox/clock", json={"advance_s": 600}) as response:
            now_s = (await response.json())["now"]
    charges = [
        await _charge(http, sandbox, "order-a", 1250),
        await _charge(http, sandbox, "order-b", 2000),
        await _charge(http, sandbox, "order-c", 990, "eur"),
        await _charge(http, sandbox, "declined-d", 700),  # moved no money: never settled
    ]
    assert [status for status, _ in charges] == [200, 200, 200, 402]
    refund_form = {"payment_intent": charges[0][1]["id"], "amount": "250", "metadata[refund_id]": "refund-a"}
    refund_status, refund = await _post(http, f"{sandbox.url}/v1/refunds", refund_form, "refund-a")
    payouts = [
        await _post(
            http,
            f"{sandbox.url}/v1/payouts",
            {"amount": "5000", "currency": "usd", "destination": destination, "metadata[payout_id]": payout_id},
            payout_id,
        )
        for payout_id, destination in [("payout-1", "ba_test_success"), ("payout-2", "ba_test_account_closed")]
    ]
    assert refund_status == 200 and [body["status"] for _, body in payouts] == ["paid", "failed"]
    return Day(
        day=datetime.fromtimestamp(now_s, UTC).date(),
        charge_usd=charges[0][1]["id"],
        charge_usd_2=charges[1][1]["id"],
        charge_eur=charges[2][1]["id"],
        refund=refund["id"],
        payout=payouts[0][1]["id"],
    )


async def _file(http: aiohttp.ClientSession, sandbox: RunningSandbox, day: date, **switches: str) -> bytes:
    async with http.get(f"{sandbox.url}/_sandbox/settlements/{day.isoformat()}", params=switches) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        return await response.read()


def _lines(body: bytes) -> list[SettlementLine]:
    items: list[SettlementLine | Quarantined] = list(SandboxSettlementParser().parse(io.BytesIO(body)))
    assert all(isinstance(item, SettlementLine) for item in items), items
    return [item for item in items if isinstance(item, SettlementLine)]


async def _settled(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, day: date, **switches: str
) -> dict[str, list[SettlementLine]]:
    by_reference: dict[str, list[SettlementLine]] = {}
    for line in _lines(await _file(http, sandbox, day, **switches)):
        by_reference.setdefault(line.psp_reference, []).append(line)
    return by_reference


async def test_a_clean_day_holds_exactly_the_settled_charges_refunds_and_payouts(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, today: Day
) -> None:
    lines = _lines(await _file(http, sandbox, today.day))

    summary = {
        (line.kind, line.psp_reference, line.merchant_reference, line.currency, line.gross_minor, line.fee_minor)
        for line in lines
    }
    assert summary == {
        (LineKind.CHARGE, today.charge_usd, "order-a", "USD", 1250, 0),
        (LineKind.CHARGE, today.charge_usd_2, "order-b", "USD", 2000, 0),
        (LineKind.CHARGE, today.charge_eur, "order-c", "EUR", 990, 0),
        (LineKind.REFUND, today.refund, "refund-a", "USD", -250, 0),
        (LineKind.PAYOUT, today.payout, "payout-1", "USD", -5000, 0),
    }
    assert len(lines) == 5 and all(line.net_minor == line.gross_minor for line in lines)
    assert all(line.batch == today.day.isoformat() for line in lines)
    refund = next(line for line in lines if line.kind is LineKind.REFUND)
    assert refund.details == {"source_reference": today.charge_usd}
    assert [line.line for line in lines] == [2, 3, 4, 5, 6]
    assert _lines(await _file(http, sandbox, today.day + timedelta(days=1))) == []


async def test_drop_change_amount_change_currency_and_duplicate(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, today: Day
) -> None:
    settled = await _settled(
        http,
        sandbox,
        today.day,
        drop=today.charge_usd_2,
        change_amount=f"{today.charge_usd}:-100",
        change_currency=f"{today.charge_eur}:GBP",
        duplicate=today.refund,
    )

    assert today.charge_usd_2 not in settled
    [changed] = settled[today.charge_usd]
    assert (changed.gross_minor, changed.fee_minor, changed.net_minor) == (1150, 0, 1150)
    assert [line.currency for line in settled[today.charge_eur]] == ["GBP"]
    assert [line.gross_minor for line in settled[today.refund]] == [-250, -250]
    assert len(settled[today.payout]) == 1


async def test_unknown_charges_fees_and_extra_fee_lines(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, today: Day
) -> None:
    settled = await _settled(http, sandbox, today.day, unknown_charges="2", fees="1", extra_fee_lines="1")

    tag = today.day.strftime("%Y%m%d")
    unknown = [settled[f"pi_unknown_{tag}_{n}"] for n in (1, 2)]
    assert [(line.kind, line.merchant_reference, line.currency, line.gross_minor) for [line] in unknown] == [
        (LineKind.CHARGE, "", "USD", 1234),
        (LineKind.CHARGE, "", "USD", 1234),
    ]
    [fee_line] = settled[f"fee_{tag}_1"]
    assert (fee_line.kind, fee_line.merchant_reference, fee_line.gross_minor, fee_line.net_minor) == (
        LineKind.FEE,
        "",
        -500,
        -500,
    )
    for reference, amount in [(today.charge_usd, 1250), (today.charge_usd_2, 2000), (today.charge_eur, 990)]:
        [charge] = settled[reference]
        assert (charge.fee_minor, charge.net_minor) == (processing_fee_minor(amount), amount - charge.fee_minor)
    assert processing_fee_minor(1250) == 66  # 36.25 + 30, rounded
    assert [line.fee_minor for reference in (today.refund, today.payout) for line in settled[reference]] == [0, 0]


async def test_settle_late_moves_a_line_to_the_next_days_file(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, today: Day
) -> None:
    late = f"{today.charge_usd_2},{today.payout}"

    settled_today = await _settled(http, sandbox, today.day, settle_late=late)
    settled_tomorrow = await _settled(http, sandbox, today.day + timedelta(days=1), settle_late=late)

    assert today.charge_usd_2 not in settled_today and today.payout not in settled_today
    assert set(settled_today) == {today.charge_usd, today.charge_eur, today.refund}
    assert set(settled_tomorrow) == {today.charge_usd_2, today.payout}
    assert {line.batch for lines in settled_tomorrow.values() for line in lines} == {
        (today.day + timedelta(days=1)).isoformat()
    }


async def test_a_truncated_file_is_rejected_by_the_parser_after_its_lines(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, today: Day
) -> None:
    body = await _file(http, sandbox, today.day, truncate="1")

    items = SandboxSettlementParser().parse(io.BytesIO(body))
    assert [next(items).line for _ in range(5)] == [2, 3, 4, 5, 6]
    with pytest.raises(FileRejected, match=r"^truncated: no trailer after line 6$"):
        next(items)


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("2026-03-02", "nope=1", "nope"),
        ("2026-03-02", "unknown_charges=many", "unknown_charges"),
        ("2026-03-02", "change_amount=pi_1", "change_amount"),
        ("2026-03-02", "change_currency=pi_1:EURO", "change_currency"),
        ("2026-03-02", "fees=maybe", "fees"),
        ("2026-03-02", "drop=pi_1&drop=pi_2", "drop"),
        ("2026-02-30", "", "date"),
        ("yesterday", "", "date"),
    ],
)
async def test_a_bad_parameter_answers_400_naming_it(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, path: str, query: str, param: str
) -> None:
    async with http.get(f"{sandbox.url}/_sandbox/settlements/{path}?{query}") as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"].startswith(f"{param}: ")
