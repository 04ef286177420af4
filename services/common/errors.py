"""Domain errors shared by every service. One mapping (grpc_errors.py) turns them into gRPC status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field, as in google.rpc.BadRequest.FieldViolation."""

    field: str
    description: str


class SettleError(Exception):
    """Base of every error a caller may see. `reason` is the UPPER_SNAKE ErrorInfo reason."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.violations = tuple(violations)


class InvalidArgument(SettleError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "VALIDATION_FAILED"


class NotFound(SettleError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(SettleError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(SettleError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unauthenticated(SettleError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "API_KEY_INVALID"


class PermissionDenied(SettleError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "SCOPE_MISSING"


class Unavailable(SettleError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class Validator:
    """Collects every field violation of a request so the caller learns all of them at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def require_text(self, field: str, value: str, *, max_length: int = 64) -> None:
        if not value:
            self.add(field, "is required")
        elif len(value) > max_length:
            self.add(field, f"must be at most {max_length} characters (got {len(value)})")
        elif value != value.strip() or any(ord(c) < 0x20 for c in value):
            self.add(field, "must not contain control characters or surrounding spaces")

    def require_uuid(self, field: str, value: str) -> uuid.UUID | None:
        """The UUID in `value`, which must be in canonical text form: another spelling of the same id
        would be a different idempotency key. None after recording a violation."""
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            parsed = None
        if parsed is None or str(parsed) != value.lower():
            self.add(field, "must be a UUID in canonical form")
            return None
        return parsed

    def raise_if_any(self) -> None:
        if self.violations:
            first = self.violations[0]
            more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
            raise InvalidArgument(f"{first.field}: {first.description}{more}", violations=self.violations)


class Unimplemented(SettleError):
    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "NOT_IMPLEMENTED"
