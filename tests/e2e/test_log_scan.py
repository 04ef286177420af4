"""No card number and no secret in any log of a Settle that ran a full business day."""

from __future__ import annotations

import json

from services.cli.endpoints import SERVICES
from services.cli.stack import Stack
from services.executor.config import ExecutorSettings
from tests.e2e.cli import settle
from tests.log_scan import scan_tree

_SECRET_SETTINGS = ("_API_KEY", "_SECRET")  # SETTLE_PSP_API_KEY, SETTLE_LEDGER_API_KEY, SETTLE_WEBHOOK_SECRET


def stack_secrets(stack: Stack) -> set[str]:
    """Every secret the stack holds: the API keys the CLI uses, what it hands to the services in their
    environment, and the PSP key the executor uses when none is set."""
    keys = stack.endpoints.api_keys
    found = {keys.checkout, keys.finance, keys.admin, str(ExecutorSettings.model_fields["psp_api_key"].default)}
    found |= {
        value
        for environment in stack.environments.values()
        for name, value in environment.items()
        if name.startswith("SETTLE_") and name.endswith(_SECRET_SETTINGS)
    }
    return {secret for secret in found if secret}


def test_a_demo_day_leaves_no_card_number_or_secret_in_any_log(stack: Stack) -> None:
    demo = settle(stack, "demo", "--checkouts", "30", "--json", timeout_s=300)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert json.loads(demo.stdout)["orders_total"] > 0
    secrets = stack_secrets(stack)
    assert len(secrets) >= 4  # three API keys and the PSP key at least
    logs = stack.data_dir / "logs"
    assert {path.name for path in logs.iterdir()} >= {f"{name}.log" for name in [*SERVICES, "psp_sandbox"]}
    findings = scan_tree(logs, secrets)
    assert not findings, "\n".join(map(str, findings[:50]))
