"""Report run endpoints, after Stripe's Reporting API: create a run, retrieve it until it has finished.

`POST /v1/reporting/report_runs` takes `report_type` (report_types.py) and `parameters[interval_start]`,
`parameters[interval_end]` (unix seconds, start before end, end no later than now on the sandbox clock:
the report type's `data_available_end`), optional `parameters[columns][]` and `parameters[timezone]`
(IANA, default Etc/UTC). Invalid parameters answer 400 invalid_request_error naming the parameter.

A run's file is made when the run is created (with the report switches then set, report_admin.py), but
the run stays `pending` for the configured delay (report_admin.py), so clients poll as they must on
Stripe. Then it is `succeeded` with `result` the File (files.py), or `failed` with `error`: when told to
fail (report_admin.py), or when the file cannot be made (the switches' synthetic lines over their limit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psp_sandbox import errors
from psp_sandbox.errors import ApiResult, JsonObject
from psp_sandbox.files import file_object
from psp_sandbox.forms import FormDict, FormError, FormValue, as_list
from psp_sandbox.ids import new_id
from psp_sandbox.report_csv import report_csv
from psp_sandbox.report_store import ReportFile, ReportRun
from psp_sandbox.report_types import REPORT_TYPES, ColumnError, ReportType, chosen_columns
from psp_sandbox.settled_items import settled_lines
from psp_sandbox.state import SandboxState
from psp_sandbox.validation import reject_unknown_params, string_param

CREATE_PARAMS = frozenset({"report_type", "parameters"})
PARAMETERS = frozenset({"interval_start", "interval_end", "columns", "timezone"})
DEFAULT_TIMEZONE = "Etc/UTC"
MAX_TIMESTAMP_DIGITS = 12


@dataclass(frozen=True)
class _RunRequest:
    report: ReportType
    start_s: int
    end_s: int
    columns: tuple[str, ...]
    timezone: str
    columns_given: bool

    def parameters(self) -> JsonObject:
        """The parameters as the run object echoes them."""
        echoed: JsonObject = {"interval_start": self.start_s, "interval_end": self.end_s, "timezone": self.timezone}
        if self.columns_given:
            echoed["columns"] = list(self.columns)
        return echoed


def create_report_run(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, CREATE_PARAMS)
    now_s = state.clock.now_s()
    request = _run_request(form, now_s)
    run_id = new_id("frr")
    file, failure = _make_file(state, run_id, now_s, request)
    ready_at = time.monotonic() + state.reports.run_delay_ms / 1000
    run = ReportRun(run_id, request.report.report_type, request.parameters(), now_s, ready_at, file, failure)
    state.reports.add(run)
    return 200, run_object(run)


def _run_request(form: FormDict, now_s: int) -> _RunRequest:
    report = _report_type(form)
    parameters = _parameters(form)
    start_s, end_s = _interval(parameters, now_s)
    columns = _columns(report, parameters)
    return _RunRequest(report, start_s, end_s, columns, _timezone(parameters), "columns" in parameters)


def _make_file(
    state: SandboxState, run_id: str, now_s: int, request: _RunRequest
) -> tuple[ReportFile | None, str | None]:
    """The run's file, or None and why the run failed."""
    if state.reports.fail_runs_with is not None:
        return None, state.reports.fail_runs_with
    try:
        lines = list(settled_lines(state, request.start_s, request.end_s, state.reports.switches))
    except ValueError as error:
        return None, f"Report run failed: {error}"
    content = report_csv(state, request.report, request.columns, ZoneInfo(request.timezone), lines)
    return ReportFile(new_id("file"), now_s, f"{run_id}.csv", f"FinanceReportRun {run_id}", content), None


def retrieve_report_run(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, frozenset())
    run_id = path_params["report_run"]
    run = state.reports.run(run_id, state.clock.now_s())
    if run is None:
        raise errors.resource_missing(f"No such reporting.report_run: '{run_id}'")
    return 200, run_object(run)


def run_object(run: ReportRun) -> JsonObject:
    status = run.status()
    return {
        "id": run.run_id,
        "object": "reporting.report_run",
        "created": run.created_s,
        "error": run.error if status == "failed" else None,
        "livemode": False,
        "parameters": run.parameters,
        "report_type": run.report_type,
        "result": file_object(run.file) if status == "succeeded" and run.file is not None else None,
        "status": status,
        "succeeded_at": run.finished_at_s if status == "succeeded" else None,
    }


def _report_type(form: FormDict) -> ReportType:
    name = string_param(form, "report_type")
    if name is None:
        raise errors.parameter_missing("report_type")
    report = REPORT_TYPES.get(name)
    if report is None:
        known = ", ".join(sorted(REPORT_TYPES))
        raise errors.invalid_request(f"Invalid report_type: {name}. The sandbox runs: {known}.", "report_type")
    return report


def _parameters(form: FormDict) -> FormDict:
    parameters = form.get("parameters")
    if parameters is None:
        raise errors.parameter_missing("parameters[interval_start]")
    if isinstance(parameters, str):
        raise errors.invalid_request("Invalid hash: parameters", "parameters")
    for name in parameters:
        if name not in PARAMETERS:
            message = f"Received unknown parameter: parameters[{name}]"
            raise errors.invalid_request(message, f"parameters[{name}]", "parameter_unknown")
    return parameters


def _interval(parameters: FormDict, now_s: int) -> tuple[int, int]:
    start_s, end_s = _timestamp(parameters, "interval_start"), _timestamp(parameters, "interval_end")
    if start_s >= end_s:
        message = "parameters[interval_start] must be before parameters[interval_end]."
        raise errors.invalid_request(message, "parameters[interval_start]")
    if end_s > now_s:
        # Stripe's data_available_end: a report covers only what has happened.
        message = f"parameters[interval_end] must be no later than data_available_end ({now_s})."
        raise errors.invalid_request(message, "parameters[interval_end]")
    return start_s, end_s


def _timestamp(parameters: FormDict, name: str) -> int:
    param = f"parameters[{name}]"
    value: FormValue | None = parameters.get(name)
    if value is None:
        raise errors.parameter_missing(param)
    if not isinstance(value, str) or not (value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS):
        raise errors.parameter_invalid_integer(param)
    return int(value)


def _columns(report: ReportType, parameters: FormDict) -> tuple[str, ...]:
    param = "parameters[columns]"
    try:
        requested = as_list(parameters.get("columns", ""), param)
    except FormError as error:
        raise errors.invalid_request(str(error), error.param) from None
    if not all(isinstance(column, str) for column in requested):
        raise errors.invalid_request(f"Invalid array: {param} must hold strings.", param)
    try:
        return chosen_columns(report, [str(column) for column in requested])
    except ColumnError as error:
        raise errors.invalid_request(str(error), param) from None


def _timezone(parameters: FormDict) -> str:
    param = "parameters[timezone]"
    value: FormValue = parameters.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(value, str):
        raise errors.invalid_request(f"Invalid string: {param} must be a string.", param)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.invalid_request(f"Invalid timezone: {value!r} is not an IANA time zone name.", param) from None
    return value


def retrieve_report_type(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    """`GET /v1/reporting/report_types/{id}`: what a run may cover. On the sandbox, data is available up to
    its clock's now (Stripe lags hours behind; `interval_end` beyond `data_available_end` is refused)."""
    reject_unknown_params(form, frozenset())
    report = REPORT_TYPES.get(path_params["report_type"])
    if report is None:
        raise errors.resource_missing(f"No such reporting.report_type: '{path_params['report_type']}'")
    now_s = state.clock.now_s()
    return 200, {
        "id": report.report_type,
        "object": "reporting.report_type",
        "data_available_start": 0,
        "data_available_end": now_s,
        "default_columns": list(report.default_columns),
        "livemode": False,
        "name": report.report_type,
        "updated": now_s,
        "version": int(report.report_type.rsplit(".", 1)[1]),
    }
