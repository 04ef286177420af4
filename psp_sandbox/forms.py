"""Decoding of Stripe's form encoding: `metadata[k]=v`, `payment_method_types[0]=card`, `expand[]=x`.

Nested keys become nested dicts. Whether `[0]` indexes a list or names a metadata key cannot be told
from the wire (Stripe decides by the parameter's schema), so array parameters are read with `as_list`.
"""

from __future__ import annotations

import re
from typing import Union
from urllib.parse import parse_qsl

FormValue = Union[str, "FormDict"]
FormDict = dict[str, FormValue]

MAX_FIELDS = 1000
MAX_DEPTH = 5
_KEY_PATTERN = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_PATTERN = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """The body is not valid form encoding; `param` names the offending key."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_form(encoded: str) -> FormDict:
    pairs = parse_qsl(encoded, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    root: FormDict = {}
    for raw_key, value in pairs:
        _assign(root, raw_key, _split_key(raw_key), value)
    return root


def _split_key(raw_key: str) -> list[str]:
    match = _KEY_PATTERN.match(raw_key)
    if match is None:
        raise FormError(f"Invalid parameter name: {raw_key}", raw_key)
    segments = [match.group(1), *_SEGMENT_PATTERN.findall(match.group(2))]
    if len(segments) > MAX_DEPTH:
        raise FormError(f"Parameter nested too deeply: {raw_key}", raw_key)
    return segments


def _assign(root: FormDict, raw_key: str, segments: list[str], value: str) -> None:
    node = root
    for position, segment in enumerate(segments):
        is_last = position == len(segments) - 1
        # `[]` appends: give it the next free index so it reads like `[N]`.
        name = str(len(node)) if segment == "" and position > 0 else segment
        if is_last:
            if name in node:
                raise FormError(f"Received the parameter {raw_key} more than once.", raw_key)
            node[name] = value
            return
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise FormError(f"Invalid hash: {raw_key} mixes a value and a hash.", raw_key)
        node = child


def as_list(value: FormValue, param: str) -> list[FormValue]:
    """Reads an array parameter; its indices must be 0..n-1."""
    if isinstance(value, str):
        if value == "":
            return []  # Stripe clears an array with an empty string.
        raise FormError(f"Invalid array: {param}", param)
    expected = [str(index) for index in range(len(value))]
    if sorted(value, key=_index_sort_key) != expected:
        raise FormError(f"Invalid array: {param} must be indexed from 0 without gaps.", param)
    return [value[index] for index in expected]


def _index_sort_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (-1, name)


def as_string_map(value: FormValue, param: str) -> dict[str, str]:
    """Reads a flat hash such as `metadata`."""
    if isinstance(value, str):
        if value == "":
            return {}
        raise FormError(f"Invalid hash: {param}", param)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise FormError(f"Invalid hash: {param}[{key}] must be a string.", f"{param}[{key}]")
        result[key] = item
    return result
