"""Rate limits and traffic statistics of the simulator, on the monotonic clock.

Stripe counts the analytics API (100 requests/s per account) apart from the general API
(25/s in test mode); each has a :class:`SlidingWindow` limiter here. Statistics count every
arriving request, refused or not, so ``peak_per_second`` shows what a client *sent* in its
busiest second: the figure a client's own rate budget must keep at or under the limit, and
``seconds_over_limit`` counts the whole seconds in which some sliding second held more arrivals
than the limit (0 for a client that keeps its budget).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any, Literal

Budget = Literal["analytics", "general"]
BUDGETS: tuple[Budget, ...] = ("analytics", "general")


class SlidingWindow:
    """Instants seen in the last ``span`` seconds: the window ``(now - span, now]``."""

    def __init__(self, span: float = 1.0) -> None:
        self.span = span
        self._seen: deque[float] = deque()

    def count(self, now: float) -> int:
        while self._seen and self._seen[0] <= now - self.span:
            self._seen.popleft()
        return len(self._seen)

    def add(self, now: float) -> int:
        """Record ``now``; return how many instants the window now holds."""
        self._seen.append(now)
        return self.count(now)


class RateLimiter:
    """Admits at most ``rate`` requests in any sliding second (``None``: unlimited).

    Refused requests are not counted against the window, as a client that backs off after a
    429 should see capacity come back within a second.
    """

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._admitted = SlidingWindow()

    def admit(self, now: float) -> bool:
        if self.rate is None:
            return True
        if self._admitted.count(now) >= self.rate:
            return False
        self._admitted.add(now)
        return True


#: How many of the latest requests ``/__stats`` lists.
RECENT_REQUESTS = 5000


class TrafficStats:
    """What ``GET /__stats`` reports."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._arrivals = {budget: SlidingWindow() for budget in BUDGETS}
        self.peak_per_second: dict[Budget, int] = dict.fromkeys(BUDGETS, 0)
        self.seconds_over_limit: dict[Budget, int] = dict.fromkeys(BUDGETS, 0)
        self._last_over: dict[Budget, int | None] = dict.fromkeys(BUDGETS, None)
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.by_agent: Counter[str] = Counter()
        #: The latest requests, bounded: (wall-clock unix time, User-Agent, endpoint). Shows
        #: which replica polled when (alertd's replicas name themselves in the User-Agent).
        self.recent: deque[tuple[float, str, str]] = deque(maxlen=RECENT_REQUESTS)

    def arrive(self, budget: Budget, endpoint: str, now: float, agent: str = "",
               limit: int | None = None) -> None:
        """Count one arriving request; ``limit`` is its budget's rate (``None``: unlimited)."""
        self.requests += 1
        self.by_endpoint[endpoint] += 1
        self.by_agent[agent[:200]] += 1
        self.recent.append((time.time(), agent[:200], endpoint))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        seen = self._arrivals[budget].add(now)
        self.peak_per_second[budget] = max(self.peak_per_second[budget], seen)
        if limit is not None and seen > limit and self._last_over[budget] != int(now):
            self._last_over[budget] = int(now)
            self.seconds_over_limit[budget] += 1
        self.first_at = now if self.first_at is None else self.first_at
        self.last_at = now

    def finish(self, status: int) -> None:
        self.in_flight -= 1
        self.by_status[status] += 1

    def to_json(self) -> dict[str, Any]:
        ok = sum(n for status, n in self.by_status.items() if 200 <= status < 300)
        return {
            "requests": self.requests,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "ok": ok,
            "errors": sum(self.by_status.values()) - ok,
            "rate_limited": self.by_status.get(429, 0),
            "peak_per_second": dict(self.peak_per_second),
            "seconds_over_limit": dict(self.seconds_over_limit),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "by_agent": dict(sorted(self.by_agent.items())),
            "recent": [{"at": at, "agent": agent, "endpoint": endpoint}
                       for at, agent, endpoint in self.recent],
            "elapsed": 0.0 if self.first_at is None or self.last_at is None
            else self.last_at - self.first_at,
        }
