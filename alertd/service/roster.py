"""The customers of one pass, in the order its batches take them, while they are listed.

Where it sits: between the directory and the engine's batches. :meth:`Engine.run_pass
<alertd.service.engine.Engine.run_pass>` gathers each distinct customer selection of its
rules once (:class:`Covered`: explicit ids looked up at once, a list or search as the
directory's :class:`~alertd.source.directory.Listing`, complete when cached, growing while a
first listing runs), and takes customers from the :class:`Roster` batch by batch: a batch can
start as soon as the first page is listed, instead of after the last.

The order is the one a pass had with every list in hand: the selections in the order of the
rules that first use them, each in Stripe's order, a customer once (where it first comes),
only those of ``customer_ids`` when given. A batch gives each rule the customers of its
selection among the batch's, in that selection's order. Knowing that a customer taken from a
selection is also in a later one needs the later one whole: customers are taken from a
selection only once every later one is done (so only the last of several selections is
judged while listed; one selection, the usual case, always is). A later selection's walk
skips the customers already taken (those of the earlier ones) by their ids.

Memory: no list is copied. Besides the pass's customers by id (which a pass always had), a
selection after the first gets a position index (id → place) once a batch needs it: one per
selection, never one per rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from alertd.errors import SourceError
from alertd.model import Customer
from alertd.source.directory import Listing, Selected


@dataclass(frozen=True, slots=True)
class CustomerProblem:
    """A (rule, customer) the directory could not serve. ``failure`` is ``None`` when Stripe
    simply has no such customer (a configuration problem), else the lookup's error (a source
    failure). ``customer`` is ``""`` when a whole list or search failed (when it failed
    midway, the customers listed before were still judged)."""

    rule: str
    customer: str
    message: str
    failure: SourceError | None = None
    deleted: bool = False


def problems_of(rule: str, selected: Selected | SourceError, only: set[str] | None
                ) -> list[CustomerProblem]:
    """What a rule's selection could not serve: the whole list (a failed list or search), or
    the ids Stripe lacks and the lookups that failed (those of ``only``, when given)."""
    if isinstance(selected, SourceError):
        return [listing_problem(rule, selected)]
    problems = [CustomerProblem(rule, m.customer_id, m.reason, deleted=m.deleted)
                for m in selected.missing if only is None or m.customer_id in only]
    problems += [
        CustomerProblem(rule, customer_id, f"could not read customer {customer_id}: {exc}", exc)
        for customer_id, exc in selected.failed if only is None or customer_id in only
    ]
    return problems


def listing_problem(rule: str, error: SourceError) -> CustomerProblem:
    return CustomerProblem(rule, "", f"could not read the rule's customers: {error}", error)


@dataclass(slots=True)
class Covered:
    """One distinct selection of a pass: the rules on it and its customers."""

    rules: list[str]
    listing: Listing
    #: The ids Stripe lacks and the failed lookups of an ``ids`` selection.
    selected: Selected | None = None
    reported: bool = False
    _positions: dict[str, int] | None = field(default=None, repr=False)

    def positions(self) -> dict[str, int]:
        """Each customer's place in the selection (only once its listing is done)."""
        assert self.listing.done
        if self._positions is None:
            self._positions = {c.id: i for i, c in enumerate(self.listing.customers)}
        return self._positions

    def problems(self, only: set[str] | None) -> list[CustomerProblem]:
        """What the selection could not serve, for each of its rules, once (the first call
        after the ids were looked up or the listing failed; none before, none again)."""
        error = self.listing.error
        if error is not None and not isinstance(error, SourceError):
            raise error  # a bug, or the directory closed under the pass: not a finding
        if self.reported or (self.selected is None and error is None):
            return []
        self.reported = True
        if isinstance(error, SourceError):
            return [listing_problem(rule, error) for rule in self.rules]
        if self.selected is None:
            return []
        return [p for rule in self.rules for p in problems_of(rule, self.selected, only)]


@dataclass(frozen=True, slots=True)
class Taken:
    """A customer a batch takes: from which selection's walk (``covered``), and its place."""

    customer: Customer
    covered: int
    position: int


class Roster:
    """Walks the pass's selections in order (see the module docstring)."""

    def __init__(self, selections: Sequence[Covered], only: set[str] | None) -> None:
        self.selections = selections
        self.only = only
        #: Every customer taken so far by id: the pass's customers once :attr:`done`.
        self.customers: dict[str, Customer] = {}
        self._at = 0
        self._next = 0

    @property
    def ready(self) -> bool:
        """Whether a customer may be taken now (one is listed, every later selection done);
        :meth:`take` may still find none left once ``customer_ids`` and repeats are skipped."""
        return self._advance()

    @property
    def done(self) -> bool:
        """Whether every selection has been walked to its end."""
        self._advance()
        return self._at >= len(self.selections)

    def take(self, most: int) -> list[Taken]:
        """Up to ``most`` customers listed and not yet taken, without waiting for more."""
        taken: list[Taken] = []
        while len(taken) < most and self._advance():
            listed = self.selections[self._at].listing.customers
            while len(taken) < most and self._next < len(listed):
                customer = listed[self._next]
                if customer.id not in self.customers and (
                        self.only is None or customer.id in self.only):
                    self.customers[customer.id] = customer
                    taken.append(Taken(customer, self._at, self._next))
                self._next += 1
        return taken

    def _advance(self) -> bool:
        """Moves past the selections walked to their end; whether a customer can be taken
        now (one is listed, and every later selection is done)."""
        while self._at < len(self.selections):
            current = self.selections[self._at].listing
            if self._next < len(current.customers):
                return all(s.listing.done for s in self.selections[self._at + 1:])
            if not current.done:
                return False
            self._at, self._next = self._at + 1, 0
        return False

    async def wait(self) -> None:
        """Returns once a customer may be taken or the walk is done (at once if so)."""
        while not self.done and not self._advance():
            later = [s.listing for s in self.selections[self._at + 1:] if not s.listing.done]
            if later:
                await later[0].finished()
            else:
                await self.selections[self._at].listing.wait(self._next)

    def problems(self) -> list[CustomerProblem]:
        """The problems of the selections not reported before (lookups, failed listings)."""
        return [p for covered in self.selections for p in covered.problems(self.only)]

    def in_batch(self, batch: Sequence[Taken]) -> dict[str, list[Customer]]:
        """Each rule's customers among ``batch``, in its selection's order (rules sharing a
        selection share the list)."""
        by_rule: dict[str, list[Customer]] = {}
        for index, covered in enumerate(self.selections):
            chosen: list[tuple[int, Customer]] = []
            for taken in batch:
                if taken.covered == index:
                    chosen.append((taken.position, taken.customer))
                elif taken.covered < index:  # also in this later, complete, selection?
                    place = covered.positions().get(taken.customer.id)
                    if place is not None:
                        chosen.append((place, covered.listing.customers[place]))
            chosen.sort(key=lambda pair: pair[0])
            customers = [customer for _, customer in chosen]
            for rule in covered.rules:
                by_rule[rule] = customers
        return by_rule

