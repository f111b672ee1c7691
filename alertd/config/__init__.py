"""Configuration: ``alertd.yaml`` read into typed settings, with every problem located.

:mod:`alertd.config.yamlpos` loads bounded YAML keeping each value's position (so a problem
reads ``FILE:LINE:COL``); :mod:`alertd.config.settings` is the pydantic model of the settings
file (durations, receivers, routes, secrets from ``*_file``); :mod:`alertd.config.validate`
checks settings, rules (:mod:`alertd.rules`) and templates together, as ``alertd validate``
and every start and reload do. Nothing here does network I/O; the shell
(:mod:`alertd.service`) takes a validated configuration from here.
"""
