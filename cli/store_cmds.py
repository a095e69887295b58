"""``pile-index info``, ``doc`` and ``serve``: inspect a store and serve it over HTTP."""

from __future__ import annotations

import argparse
import logging
import math
import re

from pile_index.errors import ConfigError
from pile_index.settings import SETTINGS

from .order_options import add_order_options, corpus_from_args, order_options_from_args
from .output import add_json_flag, emit

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts, dtype, token range and EOD count of a store")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    p.add_argument("--no-scan", action="store_true", help="skip the token scan (min/max/EOD) unless cached")
    add_json_flag(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("doc", help="one document: tokens, text, metadata")
    p.add_argument("prefix", help="PREFIX of PREFIX.bin/.idx")
    p.add_argument("doc_id", type=int, help="item index")
    p.add_argument("--tokenizer", help="tokenizer.json or hub id (default: PREFIX.tokenizer.json if present)")
    p.add_argument("--offset", type=int, default=0, help="first token to show")
    p.add_argument("--limit", type=int, default=None, help="tokens to show (default: all)")
    add_json_flag(p)
    p.set_defaults(func=cmd_doc)

    p = sub.add_parser("serve", help="serve the HTTP API over a store (OpenAPI docs at /docs)")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tokenizer", help="tokenizer.json or hub id (default: PREFIX.tokenizer.json if present)")
    p.add_argument("--dataset", action="append", default=[], metavar="DIR",
                   help="serve a built dataset folder under /v1/datasets/{name} (repeatable)")
    p.add_argument("--setting", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a named limit, e.g. --setting max_connections 200 (repeatable; the names, defaults "
                        "and help: GET /v1/settings, or the README's limits table)")
    p.add_argument("--verify", action="store_true", help="run `pile-index verify` first; refuse to start on a mismatch")
    add_order_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_info(args: argparse.Namespace) -> int:
    with corpus_from_args(args, order=False) as corpus:
        emit(corpus.store_info(scan=not args.no_scan, progress=not args.json), args.json)
    return 0


def cmd_doc(args: argparse.Namespace) -> int:
    with corpus_from_args(args, order=False, max_document_tokens=None) as corpus:  # the whole document by default
        emit(corpus.document(args.doc_id, offset=args.offset, limit=args.limit), args.json)
    return 0


def limit_settings() -> dict[str, type]:
    """The settings ``--setting`` may change (the core's table of limits) -> their type."""
    return {s.name: type(s.default) for s in SETTINGS}


def parse_setting(name: str, value: str) -> int | float:
    """``--setting NAME VALUE``: a known limit and a positive number of its type (an int in ASCII digits)."""
    kinds = limit_settings()
    if name not in kinds:
        raise ConfigError(f"--setting {name}: no such setting; expected one of {', '.join(sorted(kinds))}")
    if kinds[name] is int:
        if not re.fullmatch(r"[0-9]{1,18}", value) or int(value) < 1:
            raise ConfigError(f"--setting {name} {value!r}: expected a positive integer in ASCII digits")
        return int(value)
    number = float(value) if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,12})?([eE]-?[0-9]{1,3})?", value) else math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"--setting {name} {value!r}: expected a positive number like 2.5 or 1e-3")
    return number


def settings_from_args(args: argparse.Namespace):
    from api.settings import Settings, order_settings
    from pile_index.format import strip_prefix
    from pile_index.sql import store_tokenizer_path

    tok = args.tokenizer
    if tok is None and store_tokenizer_path(strip_prefix(args.prefix[0])).is_file():
        tok = str(store_tokenizer_path(strip_prefix(args.prefix[0])))
    limits = {name: parse_setting(name, value) for name, value in getattr(args, "setting", [])}
    return Settings(prefixes=[strip_prefix(p) for p in args.prefix], tokenizer=tok, datasets=list(args.dataset),
                    **order_settings(order_options_from_args(args)), **limits)


def cmd_serve(args: argparse.Namespace) -> int:
    """Check every input (store, documents table, tokenizer, order, datasets, limits, address) before the
    port is bound, so a mistake is one error line and exit status 2; then serve until interrupted."""
    from api.main import create_app
    from api.server import bind_socket, build_server, raise_fd_limit
    from api.state import open_state

    from .verify_cmds import verify_at_start

    settings = settings_from_args(args)
    state = open_state(settings)
    if args.verify:
        verify_at_start(args)
    fd_limit = raise_fd_limit(settings.max_connections)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    log.info("serving on http://%s:%d (OpenAPI docs at /docs; max_connections=%s, header_timeout_s=%g, open-file "
             "limit %s)", host, port, f"{settings.max_connections:,}", settings.header_timeout_s, f"{fd_limit:,}")
    server = build_server(create_app(settings, state=state), settings, log_level="warning" if args.quiet else "info")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
