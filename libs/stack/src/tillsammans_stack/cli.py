"""The ``tillsammans`` command: up, down, token, dead-letters, demo and bench."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType

import psutil

from tillsammans_common.auth import Role
from tillsammans_common.settings import ORG_ID
from tillsammans_stack.launcher import (
    DEFAULT_ROOT,
    ORGS,
    SERVICES,
    Stack,
    StackConfig,
    StackError,
    read_stack_json,
)
from tillsammans_stack.signin import SignInError, client_token, user_token

# Subcommands whose code lives in modules of their own, imported only when asked for.
DELEGATED = {"demo": "Run the journey of seed 001 against the running stack",
             "bench": "Measure throughput, latency and memory"}


SUPERVISE_INTERVAL_SECONDS = 0.2


def running_pid(root: Path) -> int | None:
    """The pid of a live ``tillsammans up`` recorded in ``<root>/stack.pid``, or None."""
    try:
        pid = int((root / "stack.pid").read_text().strip())
        process = psutil.Process(pid)
        # A stale file may name a pid the system has since given to something else.
        alive = process.status() != psutil.STATUS_ZOMBIE
        return pid if alive and any("tillsammans" in part for part in process.cmdline()) else None
    except (OSError, ValueError, psutil.Error):
        return None


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _org(value: str) -> str:
    if not ORG_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an organisation id (2-31 lowercase letters or digits)")
    return value


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return number


class _Interrupts:
    """Whether a stop request must wait for the supervisor's pass to end, and whether one came meanwhile."""

    deferred = False
    pending = False


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    if _Interrupts.deferred:
        _Interrupts.pending = True
        return
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> int:
    """Start the stack, print its URLs and block until SIGINT or SIGTERM; then stop it cleanly."""
    root: Path = args.root
    if (pid := running_pid(root)) is not None:
        print(f"a stack from {root} is already running (pid {pid}); stop it with `tillsammans down --root {root}`",
              file=sys.stderr)
        return 1
    try:
        stack = Stack(StackConfig(root=root, orgs=args.orgs, services=args.services, nats_port=args.nats_port,
                                  base_port=args.base_port,
                                  otel_endpoint=args.otel_endpoint))
    except ValueError as exc:
        print(f"tillsammans up: {exc}", file=sys.stderr)
        return 1
    # Ctrl-C, `tillsammans down` and `kill` all end in the same orderly stop; SIGINT is set explicitly
    # because a shell starting us in the background may have left it ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    root.mkdir(parents=True, exist_ok=True)
    stack.config.pid_file.write_text(f"{os.getpid()}\n")
    code = 0
    try:
        stack.start(timeout=args.timeout)
        print(f"ready in {stack.start_seconds:.1f}s. Ctrl-C or `tillsammans down` stops the stack.", flush=True)
        code = _watch(stack)
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        print(f"tillsammans up: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the stop short and leave services running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack.pids():
            print("stopping...", flush=True)
            stack.stop()
            print("stopped", flush=True)
        else:
            stack.stop()
    return code


def _watch(stack: Stack) -> int:
    """Supervise the stack until interrupted, printing what happens; return 1 once it gives up on the broker."""
    while True:
        time.sleep(SUPERVISE_INTERVAL_SECONDS)
        # Ctrl-C and `down` wait for the pass to end, so a process it starts is one stop() knows of. Deferred
        # by a flag, not by blocking the signals: a process started meanwhile would inherit the blocked mask
        # and ignore the SIGTERM that stops it.
        _Interrupts.deferred = True
        try:
            events = stack.supervise()
        finally:
            _Interrupts.deferred = False
        if _Interrupts.pending:
            raise KeyboardInterrupt
        for event in events:
            trouble = event.kind in ("exited", "gave up", "not ready")
            print(f"{datetime.now().strftime('%H:%M:%S')} {event}", file=sys.stderr if trouble else sys.stdout,
                  flush=True)
            if event.name == "nats" and event.kind == "gave up":
                print("the broker cannot be kept up: stopping the stack", file=sys.stderr, flush=True)
                return 1


def down(args: argparse.Namespace) -> int:
    """Ask a running ``tillsammans up`` to stop, and wait until it has."""
    pid = running_pid(args.root)
    if pid is None:
        print("no stack running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            # A zombie has finished; only its parent can reap it.
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        print(f"the stack (pid {pid}) did not stop within {args.timeout}s", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def token(args: argparse.Namespace) -> int:
    """Print a bearer token from the running stack's OpenID provider of ``--org``: a person's, or an integration's."""
    provider = ((read_stack_json(args.root) or {}).get("issuers") or {}).get(args.org)
    if provider is None:
        print(f"tillsammans token: no running stack under {args.root} has an OpenID provider for {args.org}; "
              "start one with `make up`", file=sys.stderr)
        return 1
    try:
        if args.client is not None:
            if args.role not in (None, Role.INTEGRATION.value) or args.user is not None:
                print("tillsammans token: a --client token is an integration's: no --user, no other --role",
                      file=sys.stderr)
                return 2
            issued = client_token(provider["issuer"], client_id=args.client, units=args.unit)
        else:
            if args.user is None or args.role is None:
                print("tillsammans token: give --user and --role (or --client for an integration)", file=sys.stderr)
                return 2
            issued = user_token(provider["issuer"], client_id=provider["audience"], user=args.user,
                                roles=[args.role], units=args.unit)
    except SignInError as exc:
        print(f"tillsammans token: {exc}", file=sys.stderr)
        return 1
    print(issued)
    return 0


def delegate(name: str, argv: list[str]) -> int:
    """Run ``tillsammans_stack.<name>.main(argv)``, importing it only now."""
    module_name = f"tillsammans_stack.{name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            print(f"tillsammans {name}: not available, {module_name} is not part of this installation",
                  file=sys.stderr)
        else:
            print(f"tillsammans {name}: could not import {module_name}: {exc}", file=sys.stderr)
        return 1
    entry = getattr(module, "main", None)
    if not callable(entry):
        print(f"tillsammans {name}: {module_name} has no main(argv)", file=sys.stderr)
        return 1
    try:
        result = entry(argv)
    except StackError as exc:
        print(f"tillsammans {name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``tillsammans``."""
    main_parser = argparse.ArgumentParser(prog="tillsammans", description="Run Tillsammans on this machine.")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    root_help = f"state directory (default {DEFAULT_ROOT})"

    up_parser = commands.add_parser("up", help="Start NATS and every organisation's services (Ctrl-C stops)",
                                    description="Start NATS and every organisation's services; block until "
                                                "Ctrl-C or `tillsammans down`, then stop them.")
    up_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    up_parser.add_argument("--nats-port", type=int, default=4333, help="NATS client port (default 4333)")
    up_parser.add_argument("--base-port", type=int, default=8100,
                           help="organisation i, service j listens on BASE + 10*i + j + 1 (default 8100)")
    up_parser.add_argument("--orgs", type=_names, default=list(ORGS),
                           help=f"comma-separated organisations (default {','.join(ORGS)})")
    up_parser.add_argument("--services", type=_names, default=list(SERVICES),
                           help=f"comma-separated services (default {','.join(SERVICES)})")
    up_parser.add_argument("--otel-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                           help="OTLP/HTTP endpoint for traces and metrics (default $OTEL_EXPORTER_OTLP_ENDPOINT)")
    up_parser.add_argument("--timeout", type=_positive, default=60, help="seconds to wait for readiness (default 60)")
    up_parser.set_defaults(run=up)

    down_parser = commands.add_parser("down", help="Stop the stack started by `tillsammans up`")
    down_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    down_parser.add_argument("--timeout", type=_positive, default=60, help="seconds to wait (default 60)")
    down_parser.set_defaults(run=down)

    token_parser = commands.add_parser(
        "token", help="Print a bearer token from the running stack's OpenID provider",
        description="Sign a user in at the organisation's development OpenID provider (its roles and units set "
                    "there first, then the authorization-code flow) and print the access token the services "
                    "accept; with --client, register an integration and print its client-credentials token.")
    token_parser.add_argument("--org", required=True, type=_org, help="organisation, e.g. school")
    token_parser.add_argument("--role", type=str.lower, choices=[role.value for role in Role],
                              help="one of: " + ", ".join(role.value for role in Role))
    token_parser.add_argument("--user", help="user id, e.g. anna.bba")
    token_parser.add_argument("--unit", action="append", default=[],
                              help="a unit the caller works at, e.g. norrskolan (repeat for more)")
    token_parser.add_argument("--client", metavar="CLIENT_ID",
                              help="an integration's client id: a client-credentials token with role integration")
    token_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    token_parser.set_defaults(run=token)

    # Imported here: the operator's commands are not needed to start or stop the stack.
    from tillsammans_stack.operate import add_parser as add_dead_letters_parser

    add_dead_letters_parser(commands, org_type=_org)

    for name, summary in DELEGATED.items():
        commands.add_parser(name, help=summary, add_help=False)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tillsammans`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # demo and bench parse their own options, --help included.
    if arguments and arguments[0] in DELEGATED:
        return delegate(arguments[0], arguments[1:])
    args = parser().parse_args(arguments)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
