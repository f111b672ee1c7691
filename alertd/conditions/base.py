"""What a condition kind is: the one object that owns everything about one condition ``type``.

A :class:`ConditionKind` says, for its ``type``:

- its schema (``model``: the pydantic model of ``condition:``, a :class:`ConditionModel`);
- what data a rule needs (``needs``) and its verdict on a series (``evaluate``), pure functions
  of their inputs, ``now`` included, with no I/O, so ``--at``, ``backtest`` and the daemon
  share them (series arrive with every bucket's ``complete`` flag already set by the
  freshness rule, so evaluators only read buckets);
- its traits: whether it is judged per period (``per_period``: a new period starts a new
  episode), which buckets' completion can change its verdict (``judged_at``), whether it reads
  the running period (``reads_running_period``), whether its verdict only climbs within a
  period (``grows_within_period``, backtest's shortcut), its severity ``levels``;
- its rule checks (``check``: what ``validate`` refuses because it could never fire);
- its figures for ``render``'s sample notifications (``sample``).

Its findings carry a :class:`~alertd.model.Figures` payload the kind defines; every other
module reads the contract's fields (``threshold``, ``baseline``, ``projected``) from it.

:class:`Evaluator` is the narrower interface (``needs`` + ``evaluate``) that benches and tests
call an evaluator through.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from alertd.model import NO_FIGURES, Customer, DataNeed, Figures, Finding, Granularity, Series

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

Op = Literal[">", ">=", "<", "<="]
Direction = Literal["up", "down", "both"]
UPPER_OPS = frozenset({">", ">="})


class StrictModel(BaseModel):
    """The base of the rule file's models: unknown keys refused, frozen, finite numbers."""

    # allow_inf_nan=False: `.inf`, `.nan` and `1e400` are refused wherever a rule takes a
    # number (values, levels, percents, volumes, durations), with the value's position.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)


class ConditionModel(StrictModel):
    """The base of every kind's ``condition:`` model; each narrows ``type`` to a
    ``Literal`` of its name, the tag the rule schema's discriminated union reads."""

    type: str


class ValueFrom(StrictModel):
    """A per-customer number read from Stripe customer metadata, scaled by ``percent``."""

    metadata: str
    percent: Annotated[float, Field(gt=0)] = 100.0


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """A problem with one rule, at ``path`` inside it (e.g. ``("condition", "duration")``).

    ``at_value`` says whether it points at the value (wrong value) or at the key.
    """

    path: tuple[str | int, ...]
    message: str
    at_value: bool = True


@dataclass(frozen=True, slots=True)
class Bound(Figures):
    """Figures of a finding judged against a bound or budget (``threshold`` in the contract)."""

    threshold: float

    def contract(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    def bound(self) -> tuple[str, float] | None:
        return ("", self.threshold)


@dataclass(frozen=True, slots=True)
class Baseline(Figures):
    """Figures of a finding judged against what was expected (``baseline`` in the contract:
    the compared period of ``change``, the expected value of ``anomaly``)."""

    baseline: float

    def contract(self) -> dict[str, float]:
        return {"baseline": self.baseline}

    def bound(self) -> tuple[str, float] | None:
        return ("~", self.baseline)


#: The quota the sample customer of ``render`` has in its metadata.
SAMPLE_QUOTA = 5_000_000.0
ADJECTIVE = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


@dataclass(frozen=True, slots=True)
class Sample:
    """Invented numbers that cross a rule's condition, for ``render``'s sample alert.

    ``recent_level`` is the usage of the periods before the judged one; ``recent_silent``
    says the last of them had none (a silence is what the alert is about); ``quota_metadata``
    is the customer metadata key that must hold :data:`SAMPLE_QUOTA` (``value_from``).
    """

    value: float
    message: str
    figures: Figures = NO_FIGURES
    severity: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    recent_level: float = 0.0
    recent_silent: bool = False
    quota_metadata: str | None = None


class Evaluator(Protocol):
    """Judges one condition type."""

    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        """The data this rule needs for ``customer`` to be evaluated at ``now``."""
        ...

    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        """The verdict on one series (``state`` is ``inactive``, ``nodata`` or ``error``;
        ``active`` says whether the condition holds; the lifecycle decides pending/firing)."""
        ...


class ConditionKind(ABC):
    """One condition ``type``: its model, evaluation and traits (see the module docstring).

    Subclasses set ``type``, ``model`` and ``per_period`` and implement the abstract methods;
    the others have defaults that hold for most kinds.
    """

    type: str
    # builtins.type: inside this class, ``type`` is the kind's name.
    model: builtins.type[ConditionModel]
    #: Whether an episode belongs to one period: a new period resolves a firing alert and
    #: starts afresh (thresholds, forecasts), rather than one episode spanning periods.
    per_period: bool

    @abstractmethod
    def needs(self, rule: Rule, customer: str, now: int) -> tuple[DataNeed, ...]:
        """The data ``rule`` needs for ``customer`` to be evaluated at ``now``."""

    @abstractmethod
    def evaluate(self, rule: Rule, series: Series, customer: Customer, now: int) -> Finding:
        """The verdict on one series (see :meth:`Evaluator.evaluate`)."""

    def evaluate_many(self, rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
                      ) -> list[Finding]:
        """:meth:`evaluate` of each ``(series, customer)``, in order; a kind whose verdicts
        are cheaper judged together overrides it."""
        return [self.evaluate(rule, series, customer, now) for series, customer in items]

    @abstractmethod
    def judged_at(self, rule: Rule) -> Granularity | None:
        """The buckets whose completion can change ``rule``'s verdict; ``None`` when
        completion never does (the kind reads the running period, complete or not)."""

    @abstractmethod
    def reads_running_period(self, rule: Rule) -> bool:
        """Whether ``rule`` judges the running period, so its verdict may change at every hour
        end and period boundary rather than only when a judged bucket completes."""

    @abstractmethod
    def sample(self, rule: Rule) -> Sample:
        """Figures that cross ``rule``'s condition, for a sample notification."""

    def grows_within_period(self, rule: Rule) -> bool:
        """Whether, within one period, each series' verdict can only climb (so a backtest may
        bisect a period instead of evaluating every instant of it)."""
        return False

    def levels(self, rule: Rule) -> tuple[str, ...]:
        """Severity levels, least severe first."""
        return (rule.severity,)

    def check(self, rule: Rule) -> list[RuleIssue]:
        """What makes ``rule`` unable to fire or be evaluated, with its window."""
        return []
