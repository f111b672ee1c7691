"""The status page and its JSON API, served by the daemon on ``server.listen``.

Where it sits: beside ``/metrics`` on the daemon's aiohttp server
(:mod:`alertd.service.http`). :mod:`board` keeps what the polls found, :mod:`app` renders the
pages, :mod:`api` the JSON, :mod:`auth` decides who may see them and checks forms,
:mod:`usage` reads a customer's chart data from Stripe (cached). Chart shapes are computed by
:mod:`alertd.charts` (pure, shared with the PNG in alert emails).
"""
