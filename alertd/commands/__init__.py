"""The commands behind ``alertd COMMAND``; each handler takes the parsed arguments and returns
an exit code. Modules are imported on use so ``alertd validate`` never loads HTTP machinery."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

_MODULES = {
    "run": "alertd.commands.run",
    "check": "alertd.commands.check",
    "validate": "alertd.commands.validate",
    "test": "alertd.commands.ruletest",
    "backtest": "alertd.commands.backtest",
    "render": "alertd.commands.render",
    "silence": "alertd.commands.silence",
    "state": "alertd.commands.state",
    "simulate": "alertd.commands.simulate",
    "demo": "alertd.commands.demo",
}


def handler(command: str) -> Handler:
    module = importlib.import_module(_MODULES[command])
    main: Handler = module.main
    return main
