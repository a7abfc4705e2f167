"""``tillsammans dead-letters``: an operator's commands against a service's admin API (decision 14).

Calls ``/admin/dead-letters`` of one service of one organisation as a user of role ``admin``, signed
in at the organisation's development OpenID provider; the service's URL and the provider come from the
running stack's ``stack.json`` unless ``--url`` and ``--token`` are given.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tillsammans_common.auth import Role
from tillsammans_stack.launcher import DEFAULT_ROOT, SERVICES, read_stack_json
from tillsammans_stack.signin import SignInError, user_token

ACTIONS = ("list", "show", "replay", "discard")


def add_parser(commands: Any, *, org_type: Any) -> None:
    """Add ``dead-letters list|show|replay|discard`` to the ``tillsammans`` command."""
    parser = commands.add_parser(
        "dead-letters", help="List, inspect, replay or discard a service's dead letters",
        description="Work a service's dead letters through its admin API, as role admin: list them (and the "
                    "messages parked until their consent arrives), show one, replay one (publish its message "
                    "again) or discard one. Nothing of a message's data is shown.")
    parser.add_argument("action", choices=ACTIONS, help="what to do: " + ", ".join(ACTIONS))
    parser.add_argument("id", nargs="?", type=int, help="the dead letter's id (for show, replay and discard)")
    parser.add_argument("--org", required=True, type=org_type, help="organisation, e.g. school")
    parser.add_argument("--service", required=True, choices=list(SERVICES), help="the service whose letters")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"state directory of the running stack (default {DEFAULT_ROOT})")
    parser.add_argument("--url", help="the service's base URL (default: from the running stack's stack.json)")
    parser.add_argument("--user", default="operator", help="user id recorded in the audit log (default operator)")
    parser.add_argument("--token", default=os.environ.get("TILLSAMMANS_TOKEN"),
                        help="a bearer token of role admin (default $TILLSAMMANS_TOKEN, else one from the running "
                             "stack's OpenID provider)")
    parser.set_defaults(run=dead_letters)


def _token_from_provider(org: str, user: str) -> str | None:
    """A token from the site's token provider, ``$TILLSAMMANS_TOKEN_PROVIDER`` (``package.module:function``).

    Like a credential helper: an organisation plugs in how its operators get an admin token (its SSO),
    and the test suite plugs in its test issuer. The function is called as ``function(org=, user=, role=)``.
    """
    named = os.environ.get("TILLSAMMANS_TOKEN_PROVIDER")
    if not named:
        return None
    module_name, _, function_name = named.partition(":")
    provider = getattr(importlib.import_module(module_name), function_name)
    return str(provider(org=org, user=user, role=Role.ADMIN.value))


def _base_url(args: argparse.Namespace) -> str | None:
    if args.url:
        return str(args.url).rstrip("/")
    stack = read_stack_json(args.root)
    url = (stack or {}).get("orgs", {}).get(args.org, {}).get(args.service)
    return str(url).rstrip("/") if url else None


def dead_letters(args: argparse.Namespace) -> int:
    """Run one dead-letter action and print the answer as JSON; non-zero when the service refused."""
    if args.action != "list" and args.id is None:
        print(f"tillsammans dead-letters {args.action}: give the dead letter's id", file=sys.stderr)
        return 2
    base = _base_url(args)
    if base is None:
        print(f"tillsammans dead-letters: no running stack under {args.root} serves {args.org}/{args.service}; "
              "start one with `make up` or give --url", file=sys.stderr)
        return 1
    token = args.token or _token_from_provider(args.org, args.user)
    if not token:
        provider = ((read_stack_json(args.root) or {}).get("issuers") or {}).get(args.org)
        if provider is None:
            print(f"tillsammans dead-letters: no running stack under {args.root} has an OpenID provider for "
                  f"{args.org}; give --token", file=sys.stderr)
            return 1
        try:
            token = user_token(provider["issuer"], client_id=provider["audience"], user=args.user,
                               roles=[Role.ADMIN.value])
        except SignInError as exc:
            print(f"tillsammans dead-letters: {exc}", file=sys.stderr)
            return 1
    method, path = {"list": ("GET", "/admin/dead-letters"), "show": ("GET", f"/admin/dead-letters/{args.id}"),
                    "replay": ("POST", f"/admin/dead-letters/{args.id}/replay"),
                    "discard": ("DELETE", f"/admin/dead-letters/{args.id}")}[args.action]
    try:
        response = httpx.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        parked = (httpx.get(base + "/admin/parked", headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
                  if args.action == "list" and response.is_success else None)
    except httpx.HTTPError as exc:
        print(f"tillsammans dead-letters: {base} did not answer ({type(exc).__name__})", file=sys.stderr)
        return 1
    if not response.is_success:
        problem = response.json() if response.content else {}
        print(f"tillsammans dead-letters {args.action}: {response.status_code} {problem.get('detail', '')}",
              file=sys.stderr)
        return 1
    if args.action == "discard":
        print(json.dumps({"discarded": args.id}))
    elif parked is not None and parked.is_success:
        print(json.dumps({"dead_letters": response.json()["items"], "parked": parked.json()["items"]}, indent=2))
    else:
        print(json.dumps(response.json(), indent=2))
    return 0
