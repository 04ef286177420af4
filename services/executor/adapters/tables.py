"""The three executions tables (charges, refunds, payouts) described once for set-based SQL.

They share the state columns and so every statement of the state machine (claim, record, release,
recover); each has its own key (the PSP idempotency key) and request columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

from sqlalchemy import Row

from services.executor.domain import ChargeOrder, ExecutionKind, OrderT, PayoutOrder, RefundOrder

STATE_COLUMNS = (
    "traceparent",
    "status",
    "attempts",
    "budgeted_attempts",
    "psp_reference",
    "failure_code",
    "failure_message",
    "updated_at",
)


@dataclass(frozen=True)
class ExecutionTable(Generic[OrderT]):
    name: str
    # The request columns with their PostgreSQL types, the key first; in the order's field order.
    request_columns: tuple[tuple[str, str], ...]
    order_type: Callable[..., OrderT]
    columns: str = field(init=False)

    def __post_init__(self) -> None:
        names = [name for name, _ in self.request_columns]
        object.__setattr__(self, "columns", ", ".join([*names, *STATE_COLUMNS]))

    @property
    def key(self) -> str:
        return self.request_columns[0][0]

    def order_of(self, row: Row[Any]) -> OrderT:
        values = {name: getattr(row, name) for name, _ in self.request_columns}
        values[self.key] = str(values[self.key])
        return self.order_type(**values, traceparent=row.traceparent)

    def values_of(self, order: OrderT) -> dict[str, Any]:
        """The order's request columns and trace, as the insert statement's parameters."""
        values = {name: getattr(order, name) for name, _ in self.request_columns}
        return {**values, "traceparent": order.traceparent}

    def qualified_columns(self, alias: str) -> str:
        return ", ".join(f"{alias}.{column.strip()}" for column in self.columns.split(","))


CHARGES: ExecutionTable[ChargeOrder] = ExecutionTable(
    "executions",
    (
        ("payment_order_id", "uuid"),
        ("payment_id", "text"),
        ("seller_id", "text"),
        ("buyer_id", "text"),
        ("amount_minor", "bigint"),
        ("currency", "text"),
        ("payment_method_token", "text"),
    ),
    ChargeOrder,
)
REFUNDS: ExecutionTable[RefundOrder] = ExecutionTable(
    "refund_executions",
    (
        ("refund_id", "uuid"),
        ("payment_order_id", "text"),
        ("payment_id", "text"),
        ("seller_id", "text"),
        ("amount_minor", "bigint"),
        ("currency", "text"),
        ("charge_psp_reference", "text"),
        ("reason", "text"),
    ),
    RefundOrder,
)
PAYOUTS: ExecutionTable[PayoutOrder] = ExecutionTable(
    "payout_executions",
    (
        ("payout_id", "uuid"),
        ("seller_id", "text"),
        ("amount_minor", "bigint"),
        ("currency", "text"),
        ("destination", "text"),
        ("batch_id", "text"),
    ),
    PayoutOrder,
)

# Where the executions of each kind live; the admin API looks them up by kind.
BY_KIND: Mapping[ExecutionKind, ExecutionTable[Any]] = {
    ExecutionKind.CHARGE: CHARGES,
    ExecutionKind.REFUND: REFUNDS,
    ExecutionKind.PAYOUT: PAYOUTS,
}
