"""Jinja2 for alertd: one sandboxed environment, its filters, and a checker for templates.

Rule annotations and labels (``"{{ customer.name }} used {{ value | number }} tokens"``) and the
notification templates (email subject and bodies, webhook bodies) all render in the
environment :func:`template_environment` builds: sandboxed (templates come from config files)
and strict (an undefined name is an error, never an empty string). :func:`check_template`
finds syntax errors and names outside the context *at load time*, so ``alertd validate``
reports them before any alert needs them.

Filters: ``number`` (thousands separators), ``duration`` (seconds → ``1h 30m``),
``datetime`` (unix seconds, ``datetime`` or ISO text → a local time in a zone).

Limits: templates come from config files and their values from Stripe, so no template may
freeze or exhaust the daemon. The environment is a :class:`LimitedEnvironment` (Jinja's
immutable sandbox whose operators, calls, filters, loops and output check a size limit and
count steps) and every render goes through :func:`render_limited`, which stops a render over
:class:`RenderLimits` (output size, value size, integer digits, steps, wall time) with a
:class:`TemplateLimitError` (:class:`TemplateTimeLimitError` for wall time) and turns
anything else a template raises into a ``TemplateRuntimeError``: callers see one kind of
error. The checks run inside the render,
so a runaway template stops itself even in a worker thread: notifiers render through
:func:`off_loop`, which also stops a render whose awaiting task was cancelled.
:func:`check_template` also renders each template once on sample values under
:data:`CHECK_LIMITS`, so ``alertd validate`` rejects ``{{ 'x' * 10**9 }}`` in milliseconds.

Why over 400 lines: the sandbox, its filters and its bounds are one security boundary, reviewed
as one.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from alertd.clock import readable_duration

#: The names an annotation or label template may use: the alert it describes. ``account``
#: is the Stripe account's name of ``accounts:`` (``""`` for the one of ``stripe.api_key``,
#: whose alerts have no ``account`` label: ``labels.account`` exists only with ``accounts:``).
TEMPLATE_NAMES: tuple[str, ...] = (
    "customer",
    "account",
    "rule",
    "severity",
    "level",
    "value",
    "threshold",
    "baseline",
    "projected",
    "meter",
    "meter_name",
    "dimensions",
    "window",
    "labels",
    "status",
    "message",
    "details",
    "refreshed_at",
    "starts_at",
    "ends_at",
)

DEFAULT_DATETIME_FORMAT = "%Y-%m-%d %H:%M %Z"

T = TypeVar("T")


def template_environment(*, autoescape: bool = False) -> SandboxedEnvironment:
    """A fresh sandboxed, strict environment with alertd's filters.

    ``autoescape=True`` is for HTML bodies. Templates are compiled from strings; a caller that
    loads files sets ``environment.loader`` itself.
    """
    environment = LimitedEnvironment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
    )
    environment.filters["number"] = format_number
    environment.filters["duration"] = readable_duration
    environment.filters["datetime"] = format_datetime
    guard_filters(environment)
    return environment


def format_number(value: float | int | None, digits: int | None = None) -> str:
    """``1234567.5`` → ``1,234,568``, ``12.345`` → ``12.35``, ``0.0123`` → ``0.0123``: whole
    units from a thousand up, two decimals below, significant digits under one; ``digits``
    fixes the decimals (at most 20).

    ``None`` (no value, e.g. no data) renders as ``n/a``; infinities as ``inf``/``-inf``, NaN
    as ``nan``; magnitudes from 10^15 up (beyond any meter) in scientific notation
    (``1.23e+308``), including integers too large for a float.
    """
    if value is None:
        return "n/a"
    if isinstance(value, int) and abs(value) >= _SCIENTIFIC_FROM:
        return _scientific(value)
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if abs(number) >= _SCIENTIFIC_FROM:
        return _scientific(number)
    if digits is not None:
        return f"{number:,.{max(0, min(digits, 20))}f}"
    if number.is_integer() or abs(number) >= 1000:
        # Usage in the thousands reads as whole units; decimals there are noise.
        return f"{round(number):,}"
    return f"{number:,.6g}" if abs(number) < 1 else f"{number:,.2f}".rstrip("0").rstrip(".")


_SCIENTIFIC_FROM = 10**15


def _scientific(value: float | int) -> str:
    # Decimal formats integers of any size (float() of 10**400 overflows).
    return format(Decimal(value), ".3g").replace("E", "e")


def format_datetime(
    value: float | int | datetime | str | None,
    tz: str | tzinfo = "UTC",
    fmt: str = DEFAULT_DATETIME_FORMAT,
) -> str:
    """An instant (unix seconds, aware ``datetime`` or ISO 8601 text) as local time in ``tz``.

    ``{{ starts_at | datetime("America/New_York") }}`` → ``2025-01-03 09:30 EST``.
    """
    if value is None:
        return "n/a"
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return _as_datetime(value).astimezone(zone).strftime(fmt)


def _as_datetime(value: float | int | datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return _as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return datetime.fromtimestamp(value, tz=UTC)


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """How much one render may do. Templates come from config files and their inputs from
    Stripe, so a template must not be able to freeze or exhaust the daemon.

    ``max_output``: characters of finished text; ``max_size``: characters or items of any
    value a template builds (``'x' * n``, ``a ~ b``, ``range(n)|list``, a filter's result);
    ``max_steps``: loop iterations, calls, attribute reads, operators and output pieces;
    ``seconds``: CPU time of the rendering thread, checked at every step (CPU, not wall
    time: a loaded machine stretches the wall clock of an honest digest, not its work);
    ``max_digits``: decimal digits of an integer that ``**`` or ``*`` makes (one such
    operation is a single C call that no step check can interrupt: ``7 ** 10**7`` held the
    GIL for seconds).
    """

    max_output: int = 8_000_000
    max_size: int = 4_000_000
    max_steps: int = 2_000_000
    seconds: float = 5.0
    max_digits: int = 4_300


DEFAULT_LIMITS = RenderLimits()

#: ``validate``'s trial renders: the same sizes; far fewer steps, as sample data is one to
#: three alerts (a real digest of 1,000 alerts takes about 130,000 steps to render as email).
CHECK_LIMITS = RenderLimits(max_steps=200_000, seconds=1.0)


class TemplateLimitError(SecurityError):
    """A render went over one of its :class:`RenderLimits`; the render stops there."""


class TemplateTimeLimitError(TemplateLimitError):
    """A render ran out of time. Unlike the size and step limits this depends on the machine
    (its speed, and how many renders share the process) as well as on the template, so
    notifiers treat it as worth a retry."""


#: Set by :func:`off_loop` when the task waiting for a worker thread is cancelled.
_CANCELLED: ContextVar[threading.Event | None] = ContextVar("alertd_render_cancelled",
                                                           default=None)


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, so renders never hold up the event loop.

    A thread cannot be killed, but renders check this: when the awaiting task is cancelled
    (a send timeout, shutdown), any render running in the thread stops at its next step.
    """
    cancelled = threading.Event()
    token = _CANCELLED.set(cancelled)  # to_thread copies this context into the thread
    try:
        return await asyncio.to_thread(function, *args)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    finally:
        _CANCELLED.reset(token)


class _Budget:
    """What is left of one render's limits; lives in :data:`_BUDGET` while it runs."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps = limits.max_steps
        self.emitted = 0
        self.deadline = time.thread_time() + limits.seconds
        self.cancelled = _CANCELLED.get()

    def step(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise TemplateLimitError("template render cancelled")
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimitError(
                f"template exceeded {self.limits.max_steps} steps (a loop too long?)")
        if time.thread_time() > self.deadline:
            raise TemplateTimeLimitError(
                f"template took longer than {self.limits.seconds:g}s of CPU time")

    def emit(self, size: int) -> None:
        # Text built inside macros and {% set %} blocks counts too, discarded or not.
        self.emitted += size
        if self.emitted > 4 * self.limits.max_output:
            raise TemplateLimitError(
                f"template output exceeded {self.limits.max_output} characters")


#: The budget of the render running in this thread or task (none: sizes are still checked).
_BUDGET: ContextVar[_Budget | None] = ContextVar("alertd_template_budget", default=None)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


def _max_size() -> int:
    budget = _BUDGET.get()
    return (budget.limits if budget is not None else DEFAULT_LIMITS).max_size


def weight(value: Any, limit: int) -> int:
    """Characters and items in ``value``, nested containers included, counted up to just past
    ``limit`` (so the count itself is cheap and cycles end)."""
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes | range):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            pending.extend(item)
        else:
            total += 1
    return total


def _too_big(projected: int, what: str) -> None:
    limit = _max_size()
    if projected > limit:
        raise TemplateLimitError(f"{what} would exceed {limit} characters or items")


def _sized(value: Any) -> Any:
    """``value`` unchanged if it is within ``max_size`` (wrapped around ``~`` operands)."""
    _too_big(weight(value, _max_size()), "a value")
    return value


def _emit(value: Any) -> Any:
    """``value`` unchanged, counted against the render's output (wrapped around output)."""
    size = weight(value, _max_size())
    _too_big(size, "an output value")
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()
        budget.emit(size)
    return value


def _counted(iterable: Any) -> Iterator[Any]:
    """The items of a ``{% for %}`` loop, one step each."""
    for item in iterable:
        _step()
        yield item


#: Names of ``%`` and ``str.format`` fields with a width or precision over 4 digits or
#: taken from an argument (``*``, ``{:{}}``): the way to ask for a gigabyte of padding.
_WIDE_PERCENT = re.compile(r"%[^%a-zA-Z]*?(?:\*|\d{5,})")
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")


def _check_format(text: str) -> None:
    if _WIDE_PERCENT.search(text) or _WIDE_FORMAT.search(text):
        raise TemplateLimitError("a format width or precision over 9999 is not allowed")


def _check_bits(bits: float) -> None:
    """Refuses an integer result of about ``bits`` bits (``log2`` of it) that would have more
    than ``max_digits`` digits, before it is computed: the operation itself is what freezes
    the event loop. (A number under 10^d has d digits or fewer.)"""
    budget = _BUDGET.get()
    digits = (budget.limits if budget is not None else DEFAULT_LIMITS).max_digits
    if bits >= digits * math.log2(10):
        raise TemplateLimitError(f"a number would exceed {digits} digits")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        # log2 of any int is exact enough here, and cheap: the result's log2 is this.
        _check_bits(math.log2(abs(base)) * exponent)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**":
        _check_power(left, right)
    elif operator == "*" and _is_int(left) and _is_int(right):
        # The product of an a-bit and a b-bit integer has a + b - 1 or a + b bits.
        _check_bits(left.bit_length() + right.bit_length() - 1)
    elif operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(count, int) and not isinstance(sequence, int | float | bool):
                limit = _max_size()
                _too_big(weight(sequence, limit) * max(count, 0), "a repeated value")
    elif operator == "+":
        limit = _max_size()
        _too_big(weight(left, limit) + weight(right, limit), "a joined value")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)


#: Methods of str/bytes/list/dict that can build something much larger than their inputs.
_GROWING_METHODS = frozenset({"join", "replace", "expandtabs", "center", "ljust", "rjust",
                              "zfill", "format", "format_map"})
#: Filters whose output can outgrow their input, with how: their input's size plus their
#: arguments' (``center``'s width, ``batch``'s count, ``tojson``'s nesting), or times the
#: size of an argument (``join``'s separator, ``replace``'s replacement), or also times a
#: number (``indent``'s width). The other filters (``map``, ``sort``, ``length``, ``upper``…)
#: give back about what they are given, which was checked when it was built.
_GROWING_FILTERS: dict[str, tuple[str, ...]] = {
    "join": ("sizes",), "replace": ("sizes",), "wordwrap": ("sizes",),
    "indent": ("sizes", "numbers"),
    **dict.fromkeys(("center", "truncate", "format", "batch", "slice", "string", "pprint",
                     "tojson", "sum", "number", "round", "xmlattr", "urlize"), ()),
}


def _projected(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
               times: Collection[str] = ("sizes",)) -> int:
    """A generous upper bound on the size of ``f(value, *args, **kwargs)``: the sizes of its
    inputs added, or the input's times the arguments' (``times``: ``sizes``, ``numbers``)."""
    limit = _max_size()
    extra = [*args, *kwargs.values()]
    numbers = sum(abs(a) for a in extra if isinstance(a, int) and not isinstance(a, bool))
    sizes = sum(weight(a, limit) for a in extra if not isinstance(a, int | float))
    factor = 1 + ("sizes" in times) * sizes + ("numbers" in times) * numbers
    return weight(value, limit) * factor + sizes + numbers


def _check_filter_input(name: str, value: Any, args: Sequence[Any],
                        kwargs: Mapping[str, Any]) -> None:
    if name == "format" and isinstance(value, str):
        _check_format(value)
    start = kwargs.get("start", args[1] if name == "sum" and len(args) > 1 else 0)
    if name == "sum" and not isinstance(start, int | float):
        # Adding up lists or strings copies the running total at every item: quadratic.
        raise TemplateLimitError("sum of lists or strings is not allowed (use join)")
    _too_big(_projected(value, args, kwargs, _GROWING_FILTERS[name]), f"the {name} filter")


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with a step, a size check of what it is given and its format strings."""
    if getattr(function, "alertd_guarded", False):
        return function
    passes = getattr(function, "jinja_pass_arg", None)
    first = 1 if passes is not None else 0  # the context or environment comes first
    growing = name in _GROWING_FILTERS

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if growing and len(args) > first:
            value = args[first]
            if isinstance(value, Iterator):
                # A generator's size is unknown until it runs (``map(...)|join(sep)``).
                value = list(_counted(value))
                args = (*args[:first], value, *args[first + 1:])
            _check_filter_input(name, value, args[first + 1:], kwargs)
        return function(*args, **kwargs)

    guarded.alertd_guarded = True  # type: ignore[attr-defined]
    return guarded


def guard_filters(environment: Environment) -> None:
    """Puts every filter of ``environment`` under the render limits (call after adding)."""
    environment.filters = {name: _guarded_filter(name, function)
                           for name, function in environment.filters.items()}


class _LimitedCodeGenerator(CodeGenerator):
    """Compiles templates so that loops, ``~`` and output report to the render's budget.

    The rewrite happens on the template's tree just before code generation: every
    ``{% for %}`` iterates through :func:`_counted`, every ``~`` operand through
    :func:`_sized`, every output piece through :func:`_emit`.
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = _wrap("_counted", loop.iter)
        for concat in node.find_all(nodes.Concat):
            concat.nodes = [_wrap("_sized", piece) for piece in concat.nodes]
        for output in node.find_all(nodes.Output):
            output.nodes = [_wrap("_emit", piece) for piece in output.nodes]
        super().visit_Template(node, frame)


def _wrap(function: str, expression: nodes.Node) -> nodes.Call:
    call = nodes.Call(nodes.ImportedName(f"{__name__}.{function}"), [expression], [], None, None)
    call.set_lineno(expression.lineno)
    return call


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with :class:`RenderLimits`: size checks on the operators, calls and
    filters that can build large values, and steps counted for the time and step limits.
    (Immutable: a template cannot grow a list it was given, e.g. ``l.extend(l)``.)
    """

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _step()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes | list | tuple | dict) and \
                getattr(__obj, "__name__", "") in _GROWING_METHODS:
            _too_big(_projected(owner, args, kwargs, ("sizes", "numbers")),
                     f"{__obj.__name__}()")
        return super().call(__context, __obj, *args, **kwargs)


def render_limited(template: Template, context: Mapping[str, Any],
                   limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Renders ``template`` within ``limits``; every failure is a :class:`TemplateError`.

    Over a limit → :class:`TemplateLimitError`; any other exception a template can cause
    (``range(10**9)``, a division by zero, deep recursion) → ``TemplateRuntimeError`` naming
    it, so callers handle one kind of error (retrying only :class:`TemplateTimeLimitError`).
    """
    budget = _Budget(limits)
    token = _BUDGET.set(budget)
    try:
        pieces: list[str] = []
        length = 0
        for piece in template.generate(context):
            length += len(piece)
            if length > limits.max_output:
                raise TemplateLimitError(
                    f"template output exceeded {limits.max_output} characters")
            pieces.append(piece)
        return "".join(pieces)
    except TemplateError:
        raise
    except Exception as exc:  # a template can raise anything its expressions raise
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _BUDGET.reset(token)


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """A problem in one template; ``line`` is 1-based inside the template text."""

    line: int
    message: str


def check_template(
    source: str,
    environment: SandboxedEnvironment | None = None,
    names: Collection[str] = TEMPLATE_NAMES,
) -> list[TemplateIssue]:
    """Syntax errors, unknown filters and top-level names outside ``names``, without rendering.

    An empty list means the template compiles and reads only names the context provides
    (attributes of those names, such as ``customer.nmae``, can only be checked at render time).
    """
    environment = environment or template_environment()
    try:
        tree = environment.parse(source)
        environment.compile(tree)
    except TemplateSyntaxError as exc:
        return [TemplateIssue(exc.lineno or 1, f"template error: {_sentence(exc.message)}")]
    # Jinja checks filters and tests only at render time inside {% if %} blocks; do it here.
    issues = [
        TemplateIssue(node.lineno, f"template error: no {kind} named {node.name!r}")
        for kind, node_type, known in (
            ("filter", nodes.Filter, environment.filters),
            ("test", nodes.Test, environment.tests),
        )
        for node in tree.find_all(node_type)
        if node.name not in known
    ]
    unknown = meta.find_undeclared_variables(tree) - set(names)
    first_use = _first_use(tree, unknown)
    issues += [TemplateIssue(first_use[name], _unknown_name(name, names)) for name in unknown]
    if not issues:
        issues += _trial_render(environment, source, names)
    return sorted(set(issues), key=lambda issue: (issue.line, issue.message))


class _AnyKey(dict[str, Any]):
    """Sample metadata for trial renders: every key exists (it varies by customer)."""

    def __missing__(self, key: str) -> str:
        return "0"


def _sample_context(names: Collection[str]) -> dict[str, Any]:
    """Plausible values for a trial render of an annotation or label template."""
    instant = datetime(2025, 1, 3, 4, 30, tzinfo=UTC)
    known: dict[str, Any] = {
        "customer": {"id": "cus_sample", "name": "Sample Co", "email": "billing@example.com",
                     "metadata": _AnyKey()},
        "account": "", "rule": "sample-rule", "severity": "warning", "level": "warning",
        "value": 1234.5,
        "threshold": 1000.0, "baseline": 900.0, "projected": 1500.0, "meter": "mtr_sample",
        "meter_name": "tokens", "dimensions": {}, "labels": {}, "status": "firing",
        "message": "usage 1,235 > 1,000", "details": _AnyKey(),
        "window": {"starts_at": instant, "ends_at": instant, "timezone": "UTC",
                   "label": "Fri 03 Jan 2025"},
        "refreshed_at": instant, "starts_at": instant, "ends_at": None,
    }
    return {name: known.get(name, "sample") for name in names}


def _trial_render(environment: Environment, source: str,
                  names: Collection[str]) -> list[TemplateIssue]:
    """A render on sample values under :data:`CHECK_LIMITS`: a template that goes over
    them (``{{ 'x' * 10**9 }}``) is an error now, not a frozen daemon later. Other failures
    depend on the data and are left to run time, where they fall back to the raw text."""
    try:
        render_limited(environment.from_string(source), _sample_context(names), CHECK_LIMITS)
    except TemplateLimitError as exc:
        return [TemplateIssue(1, f"template error: {exc}")]
    except TemplateError:
        pass
    return []


def _sentence(message: str | None) -> str:
    """Jinja's message in alertd's style: lower-case start, no final full stop."""
    text = (message or "syntax error").rstrip(".")
    return text[:1].lower() + text[1:]


def _unknown_name(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known names: {', '.join(names)}"
    return f"undefined name {name!r} in template ({hint})"


def _first_use(tree: nodes.Template, wanted: set[str]) -> dict[str, int]:
    """The line each wanted name is first read on."""
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in wanted and node.ctx == "load":
            lines[node.name] = min(lines.get(node.name, node.lineno), node.lineno)
    return {name: lines.get(name, 1) for name in wanted}
