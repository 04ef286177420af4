"""TEMPORARY probe (to be deleted): after the other e2e tests, what did the executor's webhook endpoint do?"""

import psycopg

from services.cli.stack import Stack
from services.common.db import libpq_url, service_database_url


def test_probe_webhooks(stack: Stack) -> None:
    url = libpq_url(service_database_url(stack.endpoints.database_url, "settle_executor"))
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT type, disposition, count(*) FROM webhook_events GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    print("\nWEBHOOK_PROBE", rows)
    log = stack.log_path("executor").read_text(errors="replace")
    print("WEBHOOK_PROBE rejected lines:", sum("PSP webhook rejected" in line for line in log.splitlines()))
    print("WEBHOOK_PROBE claim lost lines:", sum("claim lost" in line for line in log.splitlines()))
    assert rows
