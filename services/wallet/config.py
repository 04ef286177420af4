"""The wallet's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

from services.common.config import ServiceSettings


class WalletSettings(ServiceSettings):
    """The wallet needs nothing beyond the shared settings yet (the sale hold period comes with
    releases and payouts)."""
