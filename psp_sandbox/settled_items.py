"""What the sandbox settled in a time interval, with the discrepancy switches applied.

One computation behind both of the sandbox's settlement outputs: its own daily file (settlement.py) and
Stripe-style report runs (report_csv.py), so a switch means the same in both.

- Items: every succeeded charge (psp_reference the pi_ id, merchant reference metadata payment_order_id,
  source_reference the ch_ id), refund (re_, metadata refund_id, the refunded pi_), paid payout (po_,
  metadata payout_id, the destination bank account) and synthetic line the switches add.
- An item settles at its `created` time on the sandbox clock; `settle_late` moves it one day later (a day's
  file then holds it the next day, keeping its created time). Lines are ordered by created time, then
  psp_reference, so the same state always gives the same lines.
- Amounts are signed integers in minor units: gross > 0 into the PSP balance, < 0 out; net = gross - fee.
  Currency is upper-case ISO 4217.
- Fees: with the `fees` switch off (the default) every fee is 0, so a clean day reconciles exactly with no
  fee bookings; on, each charge pays 2.9% + 30 minor units, rounded half up in integers:
  `(amount * 29 + 500) // 1000 + 30`. Refunds and payouts never pay a fee.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

from psp_sandbox.state import SandboxState
from psp_sandbox.switches import MAX_SYNTHETIC_LINES, SettlementOptions

UNKNOWN_CHARGE_AMOUNT_MINOR = 1234
EXTRA_FEE_AMOUNT_MINOR = 500
SYNTHETIC_CURRENCY = "USD"
DAY_S = 86_400


class SettledLine(NamedTuple):
    created_s: int
    psp_reference: str
    type: str  # charge, refund, payout or fee
    merchant_reference: str
    currency: str
    gross_minor: int
    fee_minor: int
    net_minor: int
    source_reference: str


def processing_fee_minor(amount_minor: int) -> int:
    """2.9% + 30, half up, in integers: a float would make the fee depend on binary rounding."""
    return (amount_minor * 29 + 500) // 1000 + 30


def created_utc(created_s: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created_s))


def settled_lines(state: SandboxState, start_s: int, end_s: int, options: SettlementOptions) -> Iterator[SettledLine]:
    """The lines settled in [start_s, end_s), switches applied. Raises ValueError when the synthetic lines
    of so many days would pass MAX_SYNTHETIC_LINES per switch."""
    for item in _items(state, start_s, end_s, options):
        reference = item.psp_reference
        if reference in options.drop:
            continue
        gross = item.gross_minor + options.change_amount.get(reference, 0)
        line = item._replace(
            currency=options.change_currency.get(reference, item.currency),
            gross_minor=gross,
            net_minor=gross - item.fee_minor,
        )
        for _ in range(2 if reference in options.duplicate else 1):
            yield line


def _items(state: SandboxState, start_s: int, end_s: int, options: SettlementOptions) -> list[SettledLine]:
    # Only the interval's items are held (the sandbox keeps every record in memory anyway).
    late = options.settle_late

    def settles_in_interval(item: SettledLine) -> bool:
        settles_at_s = item.created_s + (DAY_S if item.psp_reference in late else 0)
        return start_s <= settles_at_s < end_s

    items = [item for item in _sandbox_items(state, options.fees) if settles_in_interval(item)]
    items += _synthetic_items(start_s, end_s, options)
    items.sort(key=lambda item: (item.created_s, item.psp_reference))
    return items


def _sandbox_items(state: SandboxState, fees: bool) -> Iterator[SettledLine]:
    # (records, type, psp reference field, metadata key of ours, source reference field, sign of gross)
    sources = (
        (state.store.charges(), "charge", "payment_intent_id", "payment_order_id", "charge_id", 1),
        (state.refunds.records(), "refund", "stripe_refund_id", "refund_id", "payment_intent_id", -1),
        (state.payouts.records(), "payout", "stripe_payout_id", "payout_id", "destination", -1),
    )
    for records, kind, id_field, metadata_key, source_field, sign in sources:
        for record in records:
            amount: int = record["amount"]
            fee = processing_fee_minor(amount) if fees and kind == "charge" else 0
            yield SettledLine(
                created_s=record["created"],
                psp_reference=record[id_field],
                type=kind,
                merchant_reference=str(record["metadata"].get(metadata_key, "")),
                currency=record["currency"].upper(),
                gross_minor=sign * amount,
                fee_minor=fee,
                net_minor=sign * amount - fee,
                source_reference=record[source_field],
            )


def _synthetic_items(start_s: int, end_s: int, options: SettlementOptions) -> list[SettledLine]:
    # One batch per UTC day whose last second is in the interval; ids are deterministic, so a test can
    # name these lines in the other switches.
    first_day_end_s = start_s - start_s % DAY_S + DAY_S - 1
    day_ends = range(first_day_end_s, end_s, DAY_S)
    per_day = max(options.unknown_charges, options.extra_fee_lines)
    if per_day and len(day_ends) * per_day > MAX_SYNTHETIC_LINES:
        raise ValueError(f"the interval is too long for the synthetic lines: over {MAX_SYNTHETIC_LINES} per switch")
    unknown = UNKNOWN_CHARGE_AMOUNT_MINOR
    fee = processing_fee_minor(unknown) if options.fees else 0
    items: list[SettledLine] = []
    for created_s in day_ends:
        tag = time.strftime("%Y%m%d", time.gmtime(created_s))
        items += [
            SettledLine(
                created_s, f"pi_unknown_{tag}_{n}", "charge", "", SYNTHETIC_CURRENCY, unknown, fee, unknown - fee, ""
            )
            for n in range(1, options.unknown_charges + 1)
        ]
        extra = -EXTRA_FEE_AMOUNT_MINOR
        items += [
            SettledLine(created_s, f"fee_{tag}_{n}", "fee", "", SYNTHETIC_CURRENCY, extra, 0, extra, "")
            for n in range(1, options.extra_fee_lines + 1)
        ]
    return items
