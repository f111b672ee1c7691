"""Fixtures for the simulator's tests: a small simulator on a free port and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from alertd.sim.server import Simulator
from alertd.sim.testing import API_KEY, running_simulator

CURRENT = "2025-11-17.preview"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(customers=4, seed=7, days=40) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sim.url, auth=(API_KEY, ""), headers={"Stripe-Version": CURRENT}
    ) as http:
        yield http
