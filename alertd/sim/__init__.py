"""The Stripe simulator: a loopback HTTP server that behaves like Stripe for every endpoint
alertd uses, over a deterministic usage generator (``alertd simulate``, ``alertd demo``,
tests, ``bench/``).

::

    profiles (customers, meters) ─┐
    incidents (labelled)         ─┼─► generator (slot values, numpy) ─► endpoints ─► server ─► HTTP
    hashing (seeded noise)       ─┘   validate, stripe_form, search ──────┘ responses   │
                                      faults, traffic (rate limits, stats), controls ───┘

Start one in a test with :func:`alertd.sim.testing.running_simulator`, in another process with
:class:`alertd.sim.testing.SimulatorProcess`, or from the shell with ``python -m alertd.sim``.
"""

from alertd.sim.faults import Fault
from alertd.sim.generator import Event, RowGroup, UsageGenerator
from alertd.sim.incidents import Incident
from alertd.sim.server import Simulator, SimulatorConfig, run

__all__ = [
    "Event",
    "Fault",
    "Incident",
    "RowGroup",
    "Simulator",
    "SimulatorConfig",
    "UsageGenerator",
    "run",
]
