"""`SETTLE_<NAME>_FILE=/path`: any setting, secrets above all, may come from a file instead.

Secrets mounted as files (Kubernetes/Docker secrets) stay out of the process environment, which leaks
into crash reports, `/proc/<pid>/environ` and child processes. One source serves every settings class
(ServiceSettings and its subclasses), so SETTLE_DATABASE_URL_FILE, SETTLE_API_KEYS_FILE,
SETTLE_PSP_API_KEY_FILE, SETTLE_LEDGER_API_KEY_FILE and SETTLE_WEBHOOK_SECRET_FILE all work alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, SettingsError

_MAX_FILE_BYTES = 1024 * 1024  # a secret or a key list, never a data file


class SecretFilesSource(PydanticBaseSettingsSource):
    """Reads `<PREFIX><FIELD>_FILE`; the file's content, stripped of surrounding whitespace (the trailing
    newline editors add), is the value. Giving both the variable and its `_FILE` form is an error."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).upper()
        environ = {name.upper(): value for name, value in os.environ.items()}
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            variable = f"{prefix}{name.upper()}"
            path = environ.get(f"{variable}_FILE")
            if path is None:
                continue
            if variable in environ:
                raise SettingsError(f"{variable} and {variable}_FILE are both set; give one of them")
            text = _read(f"{variable}_FILE", Path(path))
            values[name] = self._decode(f"{variable}_FILE", field, name, text)
        return values

    def _decode(self, variable: str, field: FieldInfo, name: str, text: str) -> Any:
        if not self.field_is_complex(field):
            return text
        try:
            return self.decode_complex_value(name, field, text)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{variable}: the file is not valid JSON ({error.msg})") from None


def _read(variable: str, path: Path) -> str:
    try:
        with path.open("rb") as file:
            content = file.read(_MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SettingsError(f"{variable}: cannot read {path} ({error.strerror})") from None
    if len(content) > _MAX_FILE_BYTES:
        raise SettingsError(f"{variable}: {path} is larger than {_MAX_FILE_BYTES} bytes")
    return content.decode().strip()


def env_or_file(variable: str) -> str | None:
    """`variable` from the environment or from the file `<variable>_FILE` names, for code that reads one
    setting without a settings class (`settle migrate`); None when neither is set."""
    path = os.environ.get(f"{variable}_FILE")
    if path is None:
        return os.environ.get(variable)
    if variable in os.environ:
        raise SettingsError(f"{variable} and {variable}_FILE are both set; give one of them")
    return _read(f"{variable}_FILE", Path(path))
