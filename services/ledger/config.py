"""The ledger's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

from services.common.config import ServiceSettings


class LedgerSettings(ServiceSettings):
    """The ledger needs nothing beyond the shared settings yet."""
