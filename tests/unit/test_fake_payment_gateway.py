"""The fake gateway keeps the PSP's promises, so unit tests of the executor can rely on them."""

import dataclasses

import pytest

from services.executor.adapters.psp.fake_gateway import FakePaymentGateway
from services.executor.psp_port import ChargeRequest, PspOutcomeUnknown, PspRequestRejected


def _request(order_id: str = "po_1", token: str = "pm_card_visa", amount_minor: int = 1250) -> ChargeRequest:
    return ChargeRequest(
        payment_order_id=order_id,
        amount_minor=amount_minor,
        currency="USD",
        payment_method_token=token,
        payment_id="pay_1",
        seller_id="seller_1",
        buyer_id="buyer_1",
    )


async def test_success_moves_money_once_per_order_however_often_it_is_retried() -> None:
    gateway = FakePaymentGateway()

    first = await gateway.charge(_request())
    second = await gateway.charge(_request())

    assert first.succeeded
    assert second == first
    assert len(gateway.charges_for("po_1")) == 1
    assert gateway.charge_calls == 2


@pytest.mark.parametrize(
    ("token", "failure_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error"),
    ],
)
async def test_decline_tokens_decline_without_moving_money(token: str, failure_code: str) -> None:
    gateway = FakePaymentGateway()

    result = await gateway.charge(_request(token=token))

    assert not result.succeeded
    assert result.failure_code == failure_code
    assert gateway.charges == []


async def test_scripted_decline() -> None:
    gateway = FakePaymentGateway()
    gateway.script_decline("pm_card_custom", "lost_card", "Lost.")

    result = await gateway.charge(_request(token="pm_card_custom"))

    assert (result.succeeded, result.failure_code, result.failure_message) == (False, "lost_card", "Lost.")


async def test_same_key_with_other_parameters_is_rejected() -> None:
    gateway = FakePaymentGateway()
    await gateway.charge(_request())

    with pytest.raises(PspRequestRejected):
        await gateway.charge(_request(amount_minor=999))
    assert len(gateway.charges) == 1


async def test_unknown_token_is_rejected() -> None:
    with pytest.raises(PspRequestRejected):
        await FakePaymentGateway().charge(_request(token="tok_bogus"))


async def test_fault_before_charge_moves_no_money() -> None:
    gateway = FakePaymentGateway()
    gateway.fail_next(PspOutcomeUnknown("503", retry_after_s=2.0))

    with pytest.raises(PspOutcomeUnknown) as raised:
        await gateway.charge(_request())

    assert raised.value.retry_after_s == 2.0
    assert gateway.charges == []
    assert await gateway.find_charge("po_1") is None


async def test_timeout_after_charge_then_retry_converges_to_one_charge() -> None:
    gateway = FakePaymentGateway()
    gateway.fail_next(PspOutcomeUnknown("timeout"), after_charge=True)

    with pytest.raises(PspOutcomeUnknown):
        await gateway.charge(_request())
    found = await gateway.find_charge("po_1")
    retried = await gateway.charge(_request())

    assert found is not None and found.succeeded
    assert retried == found
    assert len(gateway.charges_for("po_1")) == 1


async def test_forgotten_key_charges_again_which_is_why_the_executor_searches_first() -> None:
    gateway = FakePaymentGateway()
    first = await gateway.charge(_request())
    gateway.forget_idempotency_keys()

    await gateway.charge(_request())

    assert len(gateway.charges_for("po_1")) == 2
    assert await gateway.find_charge("po_1") == first


async def test_close_is_recorded() -> None:
    gateway = FakePaymentGateway()
    await gateway.close()
    assert gateway.closed


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_minor": 0},
        {"amount_minor": -5},
        {"currency": "usd"},
        {"currency": "US"},
        {"payment_order_id": ""},
    ],
)
def test_charge_request_rejects_invalid_values(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(_request(), **changes)  # type: ignore[arg-type]


def test_charge_request_rejects_float_amounts() -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(_request(), amount_minor=12.5)  # type: ignore[arg-type]


def test_charge_request_repr_leaves_out_the_payment_method_token() -> None:
    assert "pm_card_visa" not in repr(_request())
