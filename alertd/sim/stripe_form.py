"""Stripe's side of the wire: form-encoded parameters in, Stripe error bodies out.

Stripe encodes nested parameters in the query string as ``meters[0][dimension_filters][tier][0]
=premium``. :func:`parse_form` turns the pairs back into nested dicts (arrays stay dicts keyed
by their index, so the caller can tell a plain string from an array, which the API version
decides). Every refusal is a :class:`StripeRequestError`, rendered as Stripe renders errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Union

#: A decoded parameter: a string, or a nested mapping (arrays are keyed by ``"0"``, ``"1"``…).
FormValue = Union[str, dict[str, "FormValue"]]  # noqa: UP007 (a recursive alias needs Union)
Form = dict[str, FormValue]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_INTEGER = re.compile(r"^-?\d{1,18}$")
_DOCS = "https://stripe.com/docs/error-codes"


class StripeRequestError(Exception):
    """A request Stripe refuses, with what its error body and headers carry."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{_DOCS}/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid(message: str, param: str | None, code: str | None = None) -> StripeRequestError:
    """A 400 ``invalid_request_error``."""
    return StripeRequestError(400, message, code=code, param=param)


def missing(param: str) -> StripeRequestError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def unknown(param: str) -> StripeRequestError:
    return invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")


def split_key(key: str) -> list[str]:
    """``meters[0][meter]`` → ``["meters", "0", "meter"]``; a malformed key is refused."""
    match = _KEY.match(key)
    if match is None:
        raise invalid(f"Invalid parameter name: {key}", key)
    return [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]


def parse_form(pairs: Iterable[tuple[str, str]]) -> Form:
    """Nest decoded ``(key, value)`` pairs; a key given twice or both as value and as hash is
    refused, as Stripe refuses it."""
    root: Form = {}
    for key, value in pairs:
        path = split_key(key)
        node = root
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if isinstance(child, str):
                raise invalid(f"Invalid hash: {_render(path[: depth + 1])}", key)
            node = child
        if path[-1] in node:
            raise invalid(f"Received duplicate parameter: {key}", key)
        node[path[-1]] = value
    return root


def _render(path: list[str]) -> str:
    return path[0] + "".join(f"[{part}]" for part in path[1:])


def param_name(*path: str | int) -> str:
    """The display name Stripe uses in ``param``: ``meters[0][meter]``."""
    return _render([str(part) for part in path])


def check_known(form: Mapping[str, FormValue], allowed: Iterable[str], *prefix: str | int) -> None:
    """Refuse any key of ``form`` not in ``allowed`` (``expand`` is always accepted)."""
    permitted = {*allowed, "expand"}
    for key in form:
        if key not in permitted:
            raise unknown(param_name(*prefix, key))


def text(form: Mapping[str, FormValue], key: str, param: str | None = None) -> str | None:
    """A plain string parameter, ``None`` if absent; a hash where a string belongs is refused."""
    value = form.get(key)
    if isinstance(value, dict):
        raise invalid(f"Invalid string: {param or key} must be a string, not a hash", param or key)
    return value


def required_text(form: Mapping[str, FormValue], key: str) -> str:
    value = text(form, key)
    if value is None or value == "":
        raise missing(key)
    return value


def integer(form: Mapping[str, FormValue], key: str) -> int | None:
    value = text(form, key)
    if value is None:
        return None
    if not _INTEGER.match(value):
        raise invalid(f"Invalid integer: {value}", key, "parameter_invalid_integer")
    return int(value)


def required_integer(form: Mapping[str, FormValue], key: str) -> int:
    value = integer(form, key)
    if value is None:
        raise missing(key)
    return value


def array(value: FormValue, param: str) -> list[str]:
    """An array parameter (``x[0]=a&x[1]=b``) in index order; anything else is refused."""
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        raise invalid(f"Invalid array: {param} must be an array", param)
    items = [value[k] for k in sorted(value, key=int)]
    if not all(isinstance(item, str) for item in items):
        raise invalid(f"Invalid array: {param} must hold strings", param)
    return [item for item in items if isinstance(item, str)]


def limit(form: Mapping[str, FormValue]) -> int:
    """A list ``limit``: 1 to 100, default 10."""
    value = integer(form, "limit")
    if value is None:
        return 10
    if not 1 <= value <= 100:
        raise invalid("This value must be greater than or equal to 1 and at most 100.", "limit")
    return value
