"""``pile-index fetch``: a Pythia data repository from the hub into a folder; ``fetch --list``: the catalogue."""

from __future__ import annotations

import argparse

from ingest.catalogue import CATALOGUE, catalogue_records
from pile_index.errors import ConfigError

from .output import add_json_flag, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch",
        help="download a hub dataset repository (Pythia's data), verify its shard hashes, join its shards",
        description="Downloads REPO_ID (a dataset repository) into the hub cache with huggingface_hub (resumable; "
        "with HF_HUB_OFFLINE=1 it resolves from the cache only), checks the files a shipped shard_hashes.txt "
        "lists, joins each set of {base}-000NN-of-000MM.bin shards (+ {base}.idx) into DIR/{base}.bin/.idx, links "
        "every other file into DIR, and prints what DIR holds and the next command. A rerun of the same "
        "snapshot neither hashes nor joins again. --list prints the known Pythia repositories.",
    )
    p.add_argument("repo_id", nargs="?", metavar="REPO_ID", help="e.g. EleutherAI/pythia_deduped_pile_idxmaps")
    p.add_argument("--to", metavar="DIR", help="folder for the joined stores and links to the other files")
    p.add_argument("--revision", default="main", help="branch, tag or commit sha (default main)")
    p.add_argument("--include", action="append", metavar="PATTERN",
                   help="download only repository paths matching this glob (repeatable); a shipped "
                   "shard_hashes.txt is always included")
    p.add_argument("--list", action="store_true", help="print the known Pythia data repositories and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    if args.list:
        if args.json:
            emit({"repositories": catalogue_records()}, True)
        else:
            print_catalogue()
        return 0
    if not args.repo_id or not args.to:
        raise ConfigError("give REPO_ID and --to DIR (or --list for the known repositories)")
    from ingest.hub import FetchConfig, fetch

    res = fetch(FetchConfig(repo_id=args.repo_id, to=args.to, revision=args.revision, include=args.include,
                            progress=not (args.no_progress or args.json)))
    if args.json:
        emit(res, True)
    else:
        print_fetch(res)
    return 0


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"


def print_catalogue() -> None:
    for d in CATALOGUE:
        approx = "~" if d.approx else ""
        tokens = f"{approx}{d.tokens / 1e9:,.1f}B tokens" if d.tokens else "text (not tokenized)"
        print(f"{d.repo_id}\n  {d.layout}: {d.holds}\n  {tokens}, {approx}{_gb(d.disk_bytes)} to download; "
              f"files: {d.files}\n  order options: {d.preset or 'none (no training order)'}; "
              f"hashes: {d.hashes or 'none shipped'}\n  next: {d.next_command}")


def print_fetch(res: dict) -> None:
    source = "the hub cache (offline)" if res["offline"] else "the hub"
    print(f"{res['repo_id']}@{res['revision']} (commit {res['commit']}) from {source}: "
          f"{res['downloaded']['files']:,} files, {res['downloaded']['bytes']:,} bytes in {res['hub_cache']}")
    if res["holds"]:
        print(f"  {res['layout']}: {res['holds']}")
    v = res["verified"]
    if v is None:
        print("  no hash list in the repository: files not verified")
    else:
        again = " (same blobs as the last run: not hashed again)" if v["reused"] else ""
        skipped = f", {v['not_downloaded']:,} not downloaded (--include)" if v["not_downloaded"] else ""
        print(f"  verified against {', '.join(v['lists'])}: {v['match']:,} match{skipped}{again}")
    print(f"{res['folder']} now holds:")
    for s in res["stores"]:
        print(f"  {s['prefix']}.bin/.idx  {s['status']} from {s['shards']:,} shards: {s['items']:,} items, "
              f"{s['tokens']:,} tokens, {s['dtype']}, {s['bytes']:,} bytes")
    for n in res["not_joined"]:
        print(f"  {n['base']}: not joined: {n['reason']}")
    for item in res["linked"]:
        print(f"  {item['path']}  {item['bytes']:,} bytes (link into the hub cache)")
    for cmd in res["next"]:
        print(f"next: {cmd}")
