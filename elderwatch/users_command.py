"""``elderwatch users``: who may sign in to the console and call the APIs.

    elderwatch users add w-1 --role staff --language zh          # asks for the password twice
    elderwatch users add s-1 --role supervisor --community north --community east
    elderwatch users add ops --role operator --password-stdin < pw.txt
    elderwatch users add water-co --role utility --utility water-co --no-password
    elderwatch users token water-co                               # prints a new API token, once
    elderwatch users list | remove ID

The file is ``--file`` or ``ELDERWATCH_USERS_FILE``; the worker re-reads it when it changes.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from pydantic import ValidationError


def _store(args: argparse.Namespace):
    from elderwatch.settings import Settings
    from elderwatch.users import UserStore

    path = args.file or Settings().users_file
    if path is None:
        raise SystemExit("elderwatch users: error: no users file (--file or ELDERWATCH_USERS_FILE)")
    return UserStore(Path(path))


def _password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.user_id}: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("elderwatch users add: error: the passwords differ")
    return first


def _cmd(args: argparse.Namespace) -> int:
    from elderwatch.users import UsersError
    from schemas.users import User

    try:
        store = _store(args)
        if args.action == "add":
            user = User(user_id=args.user_id, role=args.role, communities=tuple(args.community or ()),
                        utility_id=args.utility, language=args.language)
            store.add(user, password=_password(args), replace=args.replace)
            print(f"{'changed' if args.replace else 'added'} {user.user_id} ({user.role.value}) in {store.path}",
                  file=sys.stderr)
        elif args.action == "token":
            print(store.issue_token(args.user_id))
            print(f"a new API token for {args.user_id}: shown once, only its hash is kept", file=sys.stderr)
        elif args.action == "remove":
            store.remove(args.user_id)
            print(f"removed {args.user_id}", file=sys.stderr)
        else:
            for user in store.users():
                extra = (",".join(user.communities) if user.communities else user.utility_id or "")
                print(f"{user.user_id:24} {user.role.value:10} {user.language:3} "
                      f"{'password' if user.password_hash else '-':9} tokens={len(user.token_hashes)} {extra}"
                      + (" (disabled)" if user.disabled else ""))
    except ValidationError as exc:
        error = exc.errors(include_input=False)[0]
        print(f"elderwatch users: error: {'.'.join(map(str, error['loc'])) or 'user'}: {error['msg']}", file=sys.stderr)
        return 2
    except UsersError as exc:
        print(f"elderwatch users: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("users", help="console and API users: add, token, list, remove")
    p.add_argument("--file", type=Path, default=None, help="users file (default: ELDERWATCH_USERS_FILE)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add a user (asks for a password)")
    a.add_argument("user_id", help="the id the roster names (staff) or any pseudonymous id")
    a.add_argument("--role", required=True, choices=["staff", "supervisor", "operator", "utility"])
    a.add_argument("--community", action="append", help="supervisor: a community they oversee (repeat for more)")
    a.add_argument("--utility", default=None, help="utility: the utility_id it pushes readings for")
    a.add_argument("--language", choices=["zh", "en"], default="zh", help="console language (default zh)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    a.add_argument("--no-password", action="store_true", help="no sign-in (API token only, e.g. a utility)")
    a.add_argument("--replace", action="store_true", help="change an existing user (keeps its password and tokens "
                                                          "unless given)")
    for name, text in (("token", "print a new API token for a user (shown once)"), ("remove", "remove a user")):
        a = actions.add_parser(name, help=text)
        a.add_argument("user_id")
    actions.add_parser("list", help="users with role, language and how they sign in (never a hash)")
    p.set_defaults(func=_cmd)
