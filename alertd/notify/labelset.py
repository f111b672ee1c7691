"""Alertmanager's spellings of a label set: its fingerprint, its text form, a route's key.

Where it sits: :mod:`alertd.notify.routing` builds group keys with :func:`group_key`; the
Alertmanager presets put :func:`fingerprint` on every alert. Receivers that correlate
Alertmanager's notifications by ``fingerprint`` or ``groupKey`` (deduplicating ticket
bridges, Alertmanager's own ``/api/v2/alerts``) see the very values Alertmanager 0.25 would
compute for the same labels and route (``tests/receivers`` checks both against a running
Alertmanager's own webhook notifications). Re-implemented from the algorithms Prometheus and
Alertmanager document in their source (``model/signature.go``, ``dispatch``):

* fingerprint: FNV-1a 64 over, for each label name in byte order, the name's UTF-8 bytes,
  the separator byte 0xFF, the value's bytes, 0xFF; written as 16 lower-case hex digits.
* a label set's text: ``{a="1", b="2"}`` — sorted names, Go-quoted values, ", " between.
* a route's key: ``{}`` for the root, then ``/`` and each child route's matchers as
  ``{name="value",name=~"^(?:regex)$"}``, in matcher order (by name, then value, ``=`` before
  ``=~``); a ``match_re`` pattern appears anchored, as Alertmanager loads it.
* a group key: the route's key, ``:``, the text of the group's labels.

Pure functions, no state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
SEPARATOR = 0xFF
_SEPARATOR = bytes([SEPARATOR])

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of ``labels`` (``model.LabelSet.Fingerprint``), in hex."""
    data = b"".join(b"%s%s%s%s" % (name, _SEPARATOR, labels[text].encode(), _SEPARATOR)
                    for name, text in sorted((n.encode(), n) for n in labels))
    value = _FNV_OFFSET
    for byte in data:  # FNV-1a 64, one pass over the whole label set's bytes
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` writes it (``strconv.Quote``)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape (the common case: ids, rule names)
    out = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def label_set_text(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}``: Alertmanager's ``LabelSet.String()``."""
    return "{" + ", ".join(f"{n}={go_quote(labels[n])}" for n in sorted(labels)) + "}"


def matchers_text(match: Iterable[tuple[str, str]], match_re: Iterable[tuple[str, str]]) -> str:
    """A route's matchers as Alertmanager writes them in a route key."""
    matchers = [(name, value, "=") for name, value in match]
    # A ``match_re`` pattern is anchored when Alertmanager loads it, and written so.
    matchers += [(name, f"^(?:{value})$", "=~") for name, value in match_re]
    matchers.sort(key=lambda m: (m[0], m[1], m[2] != "="))
    return "{" + ",".join(f"{name}{op}{go_quote(value)}" for name, value, op in matchers) + "}"


ROOT_KEY = "{}"


def child_key(parent_key: str, match: Iterable[tuple[str, str]],
              match_re: Iterable[tuple[str, str]]) -> str:
    return f"{parent_key}/{matchers_text(match, match_re)}"


def group_key(route_key: str, group_labels: Mapping[str, str]) -> str:
    """``{}/{severity="critical"}:{customer="cus_1", rule="x"}``: Alertmanager's group key."""
    return f"{route_key}:{label_set_text(group_labels)}"
