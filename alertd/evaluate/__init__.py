"""The calendar: :mod:`alertd.evaluate.windows` (periods, time zones, DST).

Condition types and their evaluation live in :mod:`alertd.conditions`.
"""
