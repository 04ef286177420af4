from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from aiokafka.structs import ConsumerRecord
from google.rpc import error_details_pb2, status_pb2
from settle.events.v1.events_pb2 import PaymentOrderRequested

from services.common.api_keys import ApiKeyAuthority, ApiKeyRecord
from services.common.config import ServiceSettings, load_settings
from services.common.consumer import PoisonRecord, decode
from services.common.errors import InvalidArgument, Unauthenticated, Validator
from services.common.events import PAYMENT_ORDER_REQUESTED
from services.common.grpc_errors import to_grpc_status
from services.common.outbox import envelope_headers


def _record(value: bytes, headers: dict[str, str], topic: str = PAYMENT_ORDER_REQUESTED) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(
        topic=topic, partition=0, offset=7, timestamp=0, timestamp_type=0, key=b"k", value=value,
        checksum=None, serialized_key_size=1, serialized_value_size=len(value),
        headers=tuple((k, v.encode()) for k, v in headers.items()),
    )  # fmt: skip


def test_a_well_formed_record_decodes_with_its_envelope() -> None:
    event_id = str(uuid.uuid4())
    headers = envelope_headers(event_id, "settle.events.v1.PaymentOrderRequested", datetime.now(UTC))
    event = decode(_record(PaymentOrderRequested(payment_order_id="po-1").SerializeToString(), headers))
    assert str(event.event_id) == event_id
    assert isinstance(event.message, PaymentOrderRequested)
    assert event.message.payment_order_id == "po-1"


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ({}, b"", "event_id"),
        ({"event_id": "not-a-uuid", "event_type": "settle.events.v1.PaymentOrderRequested"}, b"", "event_id"),
        ({"event_id": str(uuid.uuid4()), "event_type": "something.Else"}, b"", "event_type"),
        (
            {"event_id": str(uuid.uuid4()), "event_type": "settle.events.v1.PaymentOrderRequested"},
            b"\xff\xff",
            "valid",
        ),
    ],
)
def test_malformed_records_are_poison_with_a_reason(headers: dict[str, str], value: bytes, reason: str) -> None:
    with pytest.raises(PoisonRecord, match=reason):
        decode(_record(value, headers))


def test_unknown_topic_is_poison() -> None:
    with pytest.raises(PoisonRecord, match="no payload type"):
        decode(_record(b"", {"event_id": str(uuid.uuid4())}, topic="nobody.knows"))


def test_validator_reports_every_violation_at_once() -> None:
    validator = Validator()
    validator.require_text("checkout_id", "")
    validator.require_text("buyer_id", "x" * 65)
    validator.require_text("seller_id", " padded ")
    with pytest.raises(InvalidArgument) as error:
        validator.raise_if_any()
    assert [v.field for v in error.value.violations] == ["checkout_id", "buyer_id", "seller_id"]
    assert "and 2 more" in error.value.message


def test_domain_errors_map_to_status_with_error_info_and_bad_request() -> None:
    validator = Validator()
    validator.add("amount", "must be positive")
    error = InvalidArgument("amount: must be positive", violations=validator.violations)
    status = to_grpc_status(error, "payment")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    decoded = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert decoded.details[0].Unpack(info)
    assert (info.reason, info.metadata["service"]) == ("VALIDATION_FAILED", "payment")
    assert decoded.details[1].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("amount", "must be positive")]


def test_api_keys_grant_their_scopes_and_unknown_keys_are_refused() -> None:
    authority = ApiKeyAuthority(
        [ApiKeyRecord.of("k", "k" * 20, ["payments"]), ApiKeyRecord.of("f", "f" * 20, ["finance"])]
    )
    assert authority.scopes_of("k" * 20) == frozenset({"payments"})
    with pytest.raises(Unauthenticated):
        authority.scopes_of("k" * 19)


def test_bad_configuration_exits_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SETTLE_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("SETTLE_GRPC_PORT", "not-a-port")
    monkeypatch.setenv("SETTLE_API_KEYS", '{"short": ["payments"]}')
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "SETTLE_GRPC_PORT" in err and "SETTLE_API_KEYS" in err


def test_missing_required_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SETTLE_DATABASE_URL", raising=False)
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "SETTLE_DATABASE_URL" in capsys.readouterr().err
