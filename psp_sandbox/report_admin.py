"""`/_sandbox/reporting`: how the report runs created from now on behave (runs already created keep theirs).

- `POST /_sandbox/reporting/switches` sets the discrepancy switches, a form body of the settlement file's
  query parameters (docs/SETTLEMENT_FILE.md: `drop=pi_1&change_amount=pi_2:-50&fees=1...`; not `truncate`,
  a report having no trailer to cut off); it replaces the switches set before. `DELETE` turns them off.
- `POST /_sandbox/reporting/runs {"run_delay_ms": N, "fail_with": "..." | null}` (either or both): how
  long a run stays `pending` (0 to 600000 ms; 500 by default), and whether it then fails with that error
  instead of succeeding (null: succeeds, the default).
- `GET /_sandbox/reporting` shows all of it; every answer does. POST /_sandbox/reset restores the defaults.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from aiohttp import web

from psp_sandbox.admin import bad_request, json_body
from psp_sandbox.api import STATE_KEY
from psp_sandbox.errors import json_response
from psp_sandbox.report_store import MAX_RUN_DELAY_MS, ReportStore
from psp_sandbox.switches import QUERY_PARAMS, SettlementOptions, SettlementQueryError, options_from_query

REPORT_SWITCHES = tuple(name for name in QUERY_PARAMS if name != "truncate")
MAX_FIELDS = 20
MAX_ERROR_LENGTH = 500


def _settings(reports: ReportStore) -> web.Response:
    switches = {name: value for name, value in reports.switches.to_json().items() if name in REPORT_SWITCHES}
    return json_response(
        {"switches": switches, "run_delay_ms": reports.run_delay_ms, "fail_with": reports.fail_runs_with}
    )


async def get_reporting(request: web.Request) -> web.Response:
    return _settings(request.app[STATE_KEY].reports)


async def set_switches(request: web.Request) -> web.Response:
    reports = request.app[STATE_KEY].reports
    try:
        pairs = parse_qsl(await request.text(), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        reports.switches = options_from_query(pairs, REPORT_SWITCHES)
    except SettlementQueryError as error:
        return bad_request(str(error), error.param)
    except ValueError as error:  # parse_qsl: more fields than MAX_FIELDS
        return bad_request(str(error))
    return _settings(reports)


async def clear_switches(request: web.Request) -> web.Response:
    reports = request.app[STATE_KEY].reports
    reports.switches = SettlementOptions()
    return _settings(reports)


async def set_run_behaviour(request: web.Request) -> web.Response:
    reports = request.app[STATE_KEY].reports
    try:
        body = await json_body(request)
    except json.JSONDecodeError as error:
        return bad_request(str(error))
    if not isinstance(body, dict) or not body or set(body) - {"run_delay_ms", "fail_with"}:
        return bad_request("the body must be a JSON object holding 'run_delay_ms', 'fail_with' or both")
    delay_ms = body.get("run_delay_ms", reports.run_delay_ms)
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or not 0 <= delay_ms <= MAX_RUN_DELAY_MS:
        return bad_request(f"'run_delay_ms' must be an integer from 0 to {MAX_RUN_DELAY_MS}", "run_delay_ms")
    failure = body.get("fail_with", reports.fail_runs_with)
    if failure is not None and not (isinstance(failure, str) and 0 < len(failure) <= MAX_ERROR_LENGTH):
        return bad_request(f"'fail_with' must be null or a message of 1 to {MAX_ERROR_LENGTH} characters", "fail_with")
    reports.run_delay_ms, reports.fail_runs_with = delay_ms, failure
    return _settings(reports)


def report_admin_routes() -> list[web.RouteDef]:
    return [
        web.get("/_sandbox/reporting", get_reporting),
        web.post("/_sandbox/reporting/switches", set_switches),
        web.delete("/_sandbox/reporting/switches", clear_switches),
        web.post("/_sandbox/reporting/runs", set_run_behaviour),
    ]
