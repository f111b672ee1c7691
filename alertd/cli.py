"""The ``alertd`` command line: parse arguments, dispatch to a command, map errors to exit codes.

Exit codes (contract): 0 done, 1 internal error, 2 invalid usage/config/rules, 3 the data
source failed. Commands live in :mod:`alertd.commands`; this module only parses and dispatches.

Every error a user can cause ends here as one line on stderr and exit 2, never a traceback:
settings, rules and command-line values (:class:`ConfigError`, one line per problem), the
state file and its lock (:class:`StoreError`), and files or ports the system refuses
(``OSError`` naming the file). A Stripe failure is one line and exit 3. Anything else is a bug:
one line saying so and exit 1; the traceback is logged only with ``--debug`` (or
``ALERTD_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from alertd import __version__
from alertd.clock import INSTANT_FORMS
from alertd.errors import EXIT_CONFIG, EXIT_INTERNAL, EXIT_OK, AlertdError, ConfigError

EPILOG = """\
first steps:
  alertd demo                      see it work: simulator, mail and webhook sinks, the daemon
  alertd simulate --port 12111     a local Stripe account to point stripe.api_base at
  alertd validate -c alertd.yaml   check config, rules and templates (contacts nothing)
  alertd --dry-run -c alertd.yaml  one pass against Stripe: what would fire and be sent
                                   (also --rule NAME, --customer ID, --at TIME, --format json)
  alertd run -c alertd.yaml        the daemon (systemd: see systemd/alertd.service)

The config file defaults to $ALERTD_CONFIG, then /etc/alertd/alertd.yaml, then ./alertd.yaml.
Exit codes: 0 done, 1 internal error, 2 invalid usage/config/rules, 3 the data source failed.
"""


def _config_arg(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a subcommand's missing -c from overwriting one given before the command.
    parser.add_argument(
        "-c", "--config", metavar="CONFIG", default=argparse.SUPPRESS,
        help="config file (YAML); default $ALERTD_CONFIG, /etc/alertd/alertd.yaml, ./alertd.yaml",
    )


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", action="append", metavar="NAME", help="only this rule (repeat)")
    parser.add_argument(
        "--customer", action="append", metavar="ID", help="only this customer (repeat)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd",
        description="Usage alerts for Stripe usage-based billing: quotas, spend, spikes, stops.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="same as 'alertd check --dry-run' (takes its --at, --rule, --customer, --format)",
    )
    parser.add_argument("-c", "--config", metavar="CONFIG", default=None, help="config file")
    # The short form's options, as 'check' has them. SUPPRESS: absent unless given, so a
    # subcommand's own defaults are not overwritten.
    short = parser.add_argument_group("with --dry-run")
    short.add_argument("--at", metavar="TIME", default=argparse.SUPPRESS,
                       help="evaluate as of TIME")
    short.add_argument("--rule", action="append", metavar="NAME", default=argparse.SUPPRESS,
                       help="only this rule (repeat)")
    short.add_argument("--customer", action="append", metavar="ID", default=argparse.SUPPRESS,
                       help="only this customer (repeat)")
    short.add_argument("--format", choices=("text", "json"), default=argparse.SUPPRESS,
                       help="text (default) or json")
    parser.add_argument(
        "--debug", action="store_true",
        help="log the traceback of an internal error (also ALERTD_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the daemon (systemd ExecStart)",
        description="Run the daemon. Each rule's customers are read when their series could "
        "next matter, and at each rule's 'every' at the latest: a customer far below a limit "
        "less often, one climbing towards it sooner (schedule.deadlines, on by default; "
        "'schedule: {deadlines: false}' reads every customer at 'every', as before). "
        "README: 'How alertd spends the Stripe budget'.")
    _config_arg(run)

    check = commands.add_parser(
        "check", help="one evaluation pass; --dry-run prints what would be sent and sends nothing"
    )
    _config_arg(check)
    check.add_argument(
        "--dry-run", action="store_true", default=argparse.SUPPRESS,
        help="send and record nothing",
    )
    check.add_argument("--at", metavar="TIME", help=f"evaluate as of TIME: {INSTANT_FORMS}")
    _selection_args(check)

    validate = commands.add_parser(
        "validate", help="check config, rules and templates; errors as FILE:LINE:COL: message"
    )
    _config_arg(validate)

    test = commands.add_parser("test", help="run rule unit tests (fixture series → alerts)")
    test.add_argument("files", nargs="+", metavar="FILE")

    backtest = commands.add_parser("backtest", help="replay history: when rules would have fired")
    _config_arg(backtest)
    backtest.add_argument(
        "--since", required=True, metavar="TIME", help=f"from TIME: {INSTANT_FORMS}"
    )
    backtest.add_argument("--until", metavar="TIME", help="until TIME (same forms); default: now")
    backtest.add_argument(
        "--account", metavar="NAME",
        help="only this account of accounts: (default: every account, each named in the output)")
    _selection_args(backtest)

    render = commands.add_parser("render", help="render a sample notification for a rule")
    _config_arg(render)
    render.add_argument("--rule", required=True, metavar="NAME")
    render.add_argument("--receiver", metavar="NAME")

    _silence_parser(commands)
    _state_parser(commands)

    simulate = commands.add_parser(
        "simulate", help="run the local Stripe simulator",
        description="A local, deterministic Stripe account on 127.0.0.1 for experiments: point "
        "stripe.api_base at http://127.0.0.1:PORT with any sk_test_ key. Usage covers the "
        "days up to now, with injected incidents (spikes, drops, stops, quota overuse), some "
        "under way right now.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    simulate.add_argument("--port", type=int, default=12111, help="port on 127.0.0.1")
    simulate.add_argument("--customers", type=int, default=40, help="how many customers")
    simulate.add_argument("--seed", type=int, default=1,
                          help="the seed: the same seed gives the same account")
    simulate.add_argument("--days", type=int, default=90, help="days of history before now")
    simulate.add_argument("--incident-rate", type=float, default=1.0,
                          help="injected incidents per customer per 30 days")
    simulate.add_argument("--rate", type=int, default=100,
                          help="analytics requests per second before 429 (0: unlimited)")
    simulate.add_argument("--latency", type=float, default=0.0, help="seconds per response")

    demo = commands.add_parser(
        "demo", help="simulator + mail and webhook sinks + the daemon; prints each delivery"
    )
    demo.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    return parser


def _silence_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    silence = commands.add_parser("silence", help="add, list or expire silences")
    actions = silence.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="silence alerts matching label matchers")
    _config_arg(add)
    add.add_argument("matchers", nargs="+", metavar="MATCHER", help="name=value, name=~regex")
    add.add_argument("--duration", default="2h", help="how long (default 2h)")
    add.add_argument("--start", metavar="TIME", help="default: now")
    add.add_argument("--comment", required=True)
    add.add_argument("--author", default=None)
    listing = actions.add_parser("list", help="list silences")
    _config_arg(listing)
    listing.add_argument("--all", action="store_true", help="include expired ones")
    expire = actions.add_parser("expire", help="expire a silence now")
    _config_arg(expire)
    expire.add_argument("id")


def _state_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    state = commands.add_parser("state", help="migrate the state store, or copy it to PostgreSQL")
    actions = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate", help="bring the state store (state.url or state.path) to this version's "
        "schema; the daemon does this at start too")
    _config_arg(migrate)
    copy = actions.add_parser(
        "copy", help="copy a SQLite state file into an empty PostgreSQL database (stop the "
        "daemon using the file first)")
    _config_arg(copy)
    copy.add_argument("--from", dest="source", required=True, metavar="FILE",
                      help="the SQLite state file")
    copy.add_argument("--to", metavar="URL",
                      help="postgresql://USER@HOST:PORT/DB (default: state.url); the password "
                      "from state.password_file, ALERTD_STATE_PASSWORD or PGPASSWORD")


def _dispatch(args: argparse.Namespace) -> int:
    from alertd import commands

    command = args.command or ("check" if args.dry_run else None)
    if command is None:
        given = [f"--{n}" for n in ("at", "rule", "customer", "format") if hasattr(args, n)]
        if given:
            raise ConfigError(f"{', '.join(given)} without a command: use them with --dry-run "
                              "(alertd --dry-run --rule NAME) or a command (alertd check ...)")
        build_parser().print_help()
        return EXIT_CONFIG
    return commands.handler(command)(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alertd render | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        return report(exc, debug=args.debug or bool(os.environ.get("ALERTD_DEBUG")))


def report(exc: Exception, *, debug: bool = False) -> int:
    """Print ``exc`` for a person, on stderr, and return the exit code it means."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(exc, AlertdError):
        print(f"alertd: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None:
        # A file, folder or socket the system refused: the user's to fix, not a bug.
        print(f"alertd: cannot use {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    if debug:
        logging.getLogger("alertd").error("internal error", exc_info=exc)
    print(f"alertd: internal error (a bug, please report it): {type(exc).__name__}: "
          f"{_one_line(str(exc))}; run with --debug or ALERTD_DEBUG=1 for the traceback",
          file=sys.stderr)
    return EXIT_INTERNAL


def _one_line(text: str) -> str:
    return " ".join(text.split())
