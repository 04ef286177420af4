"""TEMPORARY probe (to be deleted): after the other e2e tests, what did the executor's webhook endpoint do?"""

import json

import psycopg

from services.cli.stack import Stack
from services.common.db import libpq_url, service_database_url
from tests.log_scan import scan_line


def test_probe_webhooks(stack: Stack) -> None:
    url = libpq_url(service_database_url(stack.endpoints.database_url, "settle_executor"))
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT type, disposition, count(*) FROM webhook_events GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    print("\nWEBHOOK_PROBE", rows)
    lines = stack.log_path("executor").read_text(errors="replace").splitlines()
    levels: dict[str, int] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            print("WEBHOOK_PROBE non-JSON:", line[:300])
            continue
        levels[record["level"]] = levels.get(record["level"], 0) + 1
        if record["level"] in ("WARNING", "ERROR"):
            print("WEBHOOK_PROBE", record["level"], record["logger"], record["message"][:200])
        if scan_line(line):
            print("WEBHOOK_PROBE finding:", scan_line(line), line[:400])
    print("WEBHOOK_PROBE levels", levels)
    assert rows
