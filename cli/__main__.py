"""Command line: `python -m cli <command>`; `python -m cli --help` lists them."""

from __future__ import annotations

import argparse
import logging
import sys

from core.logging import configure_logging


def _run(_: argparse.Namespace) -> int:
    from cli.stack import Stack
    from core.config import settings

    return Stack(settings).run()


def _migrate(_: argparse.Namespace) -> int:
    from cli.migrate import upgrade_database
    from core.config import settings

    upgrade_database(settings.require_database_url())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli", description="Switchboard operations")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="start the whole stack (embedded servers unless configured)"
    ).set_defaults(func=_run)
    commands.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(
        func=_migrate
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging(logging.INFO)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
