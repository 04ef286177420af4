"""File endpoints, after Stripe's Files API, for the files report runs produce: retrieve the File object,
and download its contents (`url`, which Stripe serves from files.stripe.com with the same API key).

Contents are answered outside the JSON pipeline (api.py), but authenticated alike.
"""

from __future__ import annotations

from aiohttp import web

from psp_sandbox import errors
from psp_sandbox.api import REQUEST_BASE_URL, STATE_KEY, authenticate
from psp_sandbox.errors import ApiResult, JsonObject, StripeHttpError
from psp_sandbox.forms import FormDict
from psp_sandbox.ids import new_id
from psp_sandbox.report_store import ReportFile
from psp_sandbox.state import SandboxState

FILE_LIFETIME_S = 365 * 86_400
CHUNK_BYTES = 64 * 1024


def file_object(file: ReportFile) -> JsonObject:
    url_path = f"/v1/files/{file.file_id}"
    return {
        "id": file.file_id,
        "object": "file",
        "created": file.created_s,
        "expires_at": file.created_s + FILE_LIFETIME_S,
        "filename": file.filename,
        "links": {"object": "list", "data": [], "has_more": False, "url": f"/v1/file_links?file={file.file_id}"},
        "purpose": "finance_report_run",
        "size": len(file.content),
        "title": file.title,
        "type": "csv",
        "url": f"{REQUEST_BASE_URL.get()}{url_path}/contents",
    }


def _no_such_file(file_id: str) -> StripeHttpError:
    return errors.resource_missing(f"No such file upload: '{file_id}'")


def retrieve_file(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    file = state.reports.file(path_params["file"])
    if file is None:
        raise _no_such_file(path_params["file"])
    return 200, file_object(file)


async def file_contents(request: web.Request) -> web.StreamResponse:
    request_id = new_id("req")
    try:
        authenticate(request)
        file = request.app[STATE_KEY].reports.file(request.match_info["file"])
        if file is None:
            raise _no_such_file(request.match_info["file"])
    except StripeHttpError as error:
        response = error.to_response()
        response.headers["Request-Id"] = request_id
        return response
    stream = web.StreamResponse(
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"', "Request-Id": request_id}
    )
    stream.content_type = "text/csv"
    stream.charset = "utf-8"
    stream.content_length = len(file.content)
    await stream.prepare(request)
    for start in range(0, len(file.content), CHUNK_BYTES):
        await stream.write(file.content[start : start + CHUNK_BYTES])
    await stream.write_eof()
    return stream
