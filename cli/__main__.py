"""Command line: `python -m cli <command>`; `python -m cli --help` lists them."""

from __future__ import annotations

import argparse
import logging
import os
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


def _create_superuser(args: argparse.Namespace) -> int:
    import getpass

    from cli.superuser import create_superuser

    password = os.environ.get("SUPERUSER_PASSWORD") or getpass.getpass("Password: ")
    try:
        user_id, created = create_superuser(args.email, password, args.username)
    except ValueError as error:
        sys.stderr.write(f"create-superuser: {error}\n")
        return 2
    sys.stdout.write(f"{'created' if created else 'promoted'} superuser {args.email} ({user_id})\n")
    return 0


def _rotate_keys(_: argparse.Namespace) -> int:
    from cli.rotate import rotate_secrets

    logging.getLogger("switchboard.cli").info("re-encrypted %d secrets", rotate_secrets())
    return 0


def _check_models(_: argparse.Namespace) -> int:
    from cli.check_models import check_models

    reports = check_models()
    for report in reports:
        sys.stdout.write(report.line() + "\n")
    if any(report.missing for report in reports):
        return 1
    return 2 if any(report.error for report in reports) else 0


def _import_users(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cli.import_users import import_users

    try:
        report = import_users(Path(args.file))
    except (OSError, UnicodeDecodeError) as error:
        sys.stderr.write(f"import-users: cannot read {args.file}: {error}\n")
        return 2
    for number, reason in sorted(report.errors):
        sys.stderr.write(f"import-users: line {number}: {reason}\n")
    if report.errors:
        sys.stderr.write(f"import-users: {len(report.errors)} bad lines; nothing imported\n")
        return 1
    sys.stdout.write(
        f"imported {report.imported} users, skipped {len(report.skipped)} already here\n"
    )
    for email in report.skipped:
        sys.stdout.write(f"skipped {email}\n")
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
    superuser = commands.add_parser(
        "create-superuser",
        help="create a superuser, or promote an existing account and reset its password "
        "(password from SUPERUSER_PASSWORD or a prompt)",
    )
    superuser.add_argument("--email", required=True)
    superuser.add_argument("--username")
    superuser.set_defaults(func=_create_superuser)
    commands.add_parser(
        "rotate-keys", help="re-encrypt stored secrets with the first ENCRYPTION_KEYS key"
    ).set_defaults(func=_rotate_keys)
    commands.add_parser(
        "check-models",
        help="ask each configured provider for its model list and name every catalogue "
        "model it does not list (exit 1; 2 when a provider could not be asked)",
    ).set_defaults(func=_check_models)
    importing = commands.add_parser(
        "import-users",
        help="load the earlier systems' users from JSON lines (email, username?, "
        "hashed_password?, full_name?, plan?, created_at?); all lines or none, "
        "existing emails skipped",
    )
    importing.add_argument("file")
    importing.set_defaults(func=_import_users)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging(logging.INFO)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
