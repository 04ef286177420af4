"""The /_sandbox admin API that tests and benchmarks use to inject faults and inspect money movements.

`/_sandbox/charges`, `/_sandbox/refunds` and `/_sandbox/payouts` list every successful charge, refund and
paid payout, oldest first, filtered by `payment_order_id` (charges, refunds) or `payout_id` (payouts)
as found in the object's metadata. `/_sandbox/settlements/{YYYY-MM-DD}` streams a day's settlement file
(psp_sandbox/settlement.py), with discrepancy switches as query parameters.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web

from psp_sandbox.api import STATE_KEY
from psp_sandbox.errors import JsonObject, json_response
from psp_sandbox.faults import FaultSpecError, parse_fault
from psp_sandbox.settlement import SettlementQueryError, options_from_query, settlement_day, settlement_rows
from psp_sandbox.state import SandboxState

SETTLEMENT_CHUNK_CHARS = 64 * 1024  # rows are sent in chunks of about this size: few writes, bounded buffer


def bad_request(message: str, param: str | None = None) -> web.Response:
    error: JsonObject = {"type": "invalid_request_error", "message": message}
    if param is not None:
        error["param"] = param
    return json_response({"error": error}, status=400)


async def json_body(request: web.Request) -> Any:
    text = await request.text()
    return json.loads(text) if text.strip() else {}


async def add_fault(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        fault = parse_fault(await json_body(request))
        state.faults.add(fault)
    except (json.JSONDecodeError, FaultSpecError) as error:
        return bad_request(str(error))
    return json_response(fault.to_json())


async def list_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"data": [fault.to_json() for fault in state.faults.pending()]})


async def clear_faults(request: web.Request) -> web.Response:
    return json_response({"deleted": request.app[STATE_KEY].faults.clear()})


async def list_charges(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"data": state.store.charges(request.query.get("payment_order_id"))})


async def list_refunds(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"data": state.refunds.records(request.query.get("payment_order_id"))})


async def list_payouts(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"data": state.payouts.records(request.query.get("payout_id"))})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return json_response({"reset": True})


async def get_clock(request: web.Request) -> web.Response:
    clock = request.app[STATE_KEY].clock
    return json_response({"now": clock.now_s(), "offset_s": clock.offset_s})


async def advance_clock(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await json_body(request)
    except json.JSONDecodeError as error:
        return bad_request(str(error))
    seconds = body.get("advance_s") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return bad_request("'advance_s' must be a non-negative integer")
    state.advance_clock(seconds)
    return await get_clock(request)


def _config(state: SandboxState) -> JsonObject:
    return {"idempotency_retention_s": state.idempotency.retention_s}


async def get_config(request: web.Request) -> web.Response:
    return json_response(_config(request.app[STATE_KEY]))


async def update_config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await json_body(request)
    except json.JSONDecodeError as error:
        return bad_request(str(error))
    if not isinstance(body, dict) or set(body) != {"idempotency_retention_s"}:
        return bad_request("the body must be a JSON object holding only 'idempotency_retention_s'")
    seconds = body["idempotency_retention_s"]
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        return bad_request("'idempotency_retention_s' must be a positive integer (seconds)")
    state.idempotency.retention_s = seconds
    return json_response(_config(state))


async def get_settlement_file(request: web.Request) -> web.StreamResponse:
    """The settlement file of one day (settlement.py), streamed; query parameters switch discrepancies on."""
    try:
        day = settlement_day(request.match_info["date"])
        options = options_from_query(request.query.items())
    except SettlementQueryError as error:
        return bad_request(str(error), error.param)
    rows = settlement_rows(request.app[STATE_KEY], day, options)
    response = web.StreamResponse(headers={"Content-Disposition": f'attachment; filename="settlement_{day}.csv"'})
    response.content_type = "text/csv"
    response.charset = "utf-8"
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
        if buffer.tell() >= SETTLEMENT_CHUNK_CHARS:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def admin_routes() -> list[web.RouteDef]:
    return [
        web.post("/_sandbox/faults", add_fault),
        web.get("/_sandbox/faults", list_faults),
        web.delete("/_sandbox/faults", clear_faults),
        web.get("/_sandbox/charges", list_charges),
        web.get("/_sandbox/refunds", list_refunds),
        web.get("/_sandbox/payouts", list_payouts),
        web.post("/_sandbox/reset", reset),
        web.get("/_sandbox/clock", get_clock),
        web.post("/_sandbox/clock", advance_clock),
        web.get("/_sandbox/config", get_config),
        web.post("/_sandbox/config", update_config),
        web.get("/_sandbox/settlements/{date}", get_settlement_file),
        web.get("/_sandbox/health", health),
    ]
