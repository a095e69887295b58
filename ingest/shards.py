"""Pythia's sharded ``.bin`` files: join, split and verify against published sha256 lines.

Pythia ships big GPT-NeoX stores as byte slices of one ``.bin`` named ``{base}-{i:05}-of-{n-1:05}.bin``
(``pythia_deduped_pile_idxmaps``: 83 shards of 5,000,000,000 bytes; the preshuffled stores:
``document-000NN-of-00020.bin``), and the ``.idx`` whole beside them as ``{base}.idx`` (pythia README:
"unshard_memmap.py ... then copy the .idx"; ``utils/shard_hashes.txt`` lists the shards and the ``.idx``).
Unsharding is plain concatenation in index order. Pythia's hash list puts the file name first
(``name sha256``, one space, as ``utils/checksum_shards.py`` reads it with ``line.split()``); ``sha256sum``
puts the hash first (``sha256  name``). ``split`` writes Pythia's order; both are read.

Shard count: pythia's ``utils/shard_memmap.py`` writes ``bytes // size + 1`` shards, so a ``.bin`` that is an
exact multiple of the size ends in a 0-byte shard (and ``-of-NNNNN`` counts it). ``split`` does the same, so
its names and hashes are those pythia's tool gives; ``join`` accepts a set with or without that empty shard.

Every output is written under a temp name and renamed when complete (``pile_index.atomic``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from pile_index.atomic import atomic_open, write_bytes
from pile_index.errors import ConfigError, FormatError, NotFoundError
from pile_index.format import IndexedDataset, MMapIndex, strip_prefix

COPY_BYTES = 8 << 20
_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<i>\d{5})-of-(?P<last>\d{5})\.bin$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """``(base, i, last)`` of a Pythia shard file name ``{base}-{i:05}-of-{last:05}.bin``, else None."""
    m = _SHARD_RE.match(name)
    return (m["base"], int(m["i"]), int(m["last"])) if m else None


def shard_name(base: str, i: int, n: int) -> str:
    """Pythia's name of shard ``i`` of ``n``: ``{base}-{i:05}-of-{n-1:05}.bin``."""
    return f"{base}-{i:05}-of-{n - 1:05}.bin"


def _bar(enabled: bool, total: int, desc: str):
    from pile_index.progress import progress_bar

    return progress_bar(total=total, unit="B", unit_scale=True, desc=desc, enabled=enabled)


def find_shards(base: str | os.PathLike) -> tuple[Path, list[Path]]:
    """``(folder/base, shards in order)`` for a base path or the path of any one shard; checks the set."""
    b = Path(base)
    m = _SHARD_RE.match(b.name)
    if m:
        b = b.with_name(m["base"])
    elif b.name.endswith(".bin"):
        b = b.with_name(b.name[:-4])
    folder = b.parent if str(b.parent) else Path(".")
    if not folder.is_dir():
        raise NotFoundError(f"shards {b}: folder {folder} does not exist")
    found: dict[int, tuple[int, Path]] = {}
    lasts: set[int] = set()
    for p in sorted(folder.iterdir()):
        mm = _SHARD_RE.match(p.name)
        if mm and mm["base"] == b.name:
            found[int(mm["i"])] = (int(mm["last"]), p)
            lasts.add(int(mm["last"]))
    if not found:
        raise NotFoundError(
            f"shards {b}: no files named {b.name}-00000-of-NNNNN.bin in {folder}; pass the shard base or shard 0"
        )
    if len(lasts) != 1:
        raise FormatError(
            f"shards {b}: the names disagree on the shard count: '-of-' {sorted(lasts)}; expected one value"
        )
    last = lasts.pop()
    missing = [i for i in range(last + 1) if i not in found]
    if missing:
        names = ", ".join(shard_name(b.name, i, last + 1) for i in missing[:5])
        more = f" and {len(missing) - 5:,} more" if len(missing) > 5 else ""
        raise NotFoundError(f"shards {b}: {len(missing):,} of {last + 1:,} shards are missing: {names}{more}")
    extra = sorted(i for i in found if i > last)
    if extra:
        raise FormatError(f"shards {b}: shard index {extra[0]:05} is beyond the last one ({last:05})")
    return b, [found[i][1] for i in range(last + 1)]


def join_shards(base: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Concatenate the shards of ``base`` into ``OUT.bin``; copy ``base.idx`` to ``OUT.idx`` when present.

    Checks: all shards 0..N-1 present with one shard count in their names, every shard but the last of one
    size (a byte split), the last no bigger (0 bytes included: pythia's split of an exact multiple), and,
    with an ``.idx``, that it describes exactly the joined size.
    """
    b, shards = find_shards(base)
    sizes = [p.stat().st_size for p in shards]
    for i, s in enumerate(sizes[:-1]):
        if s != sizes[0]:
            raise FormatError(
                f"{shards[i]}: size {s:,} bytes; expected {sizes[0]:,} like shard 0 (every shard but the last "
                f"has the same size); the shard is truncated or from another split"
            )
    if sizes[-1] > sizes[0]:
        raise FormatError(f"{shards[-1]}: the last shard has {sizes[-1]:,} bytes, more than the others' {sizes[0]:,}")
    total = sum(sizes)
    idx_src = Path(f"{b}.idx")
    index = None
    if idx_src.is_file():
        index = MMapIndex(idx_src)
        if index.data_bytes != total:
            raise FormatError(
                f"{idx_src}: describes a .bin of {index.data_bytes:,} bytes, the {len(shards):,} shards hold "
                f"{total:,}; a shard is missing or truncated, or the .idx belongs to another store"
            )
    prefix = strip_prefix(out)
    out_bin, out_idx = Path(f"{prefix}.bin"), Path(f"{prefix}.idx")
    if out_bin.resolve() in {p.resolve() for p in shards} or (index is not None and out_idx.resolve() == idx_src.resolve()):
        raise ConfigError(f"`out` {prefix}: would overwrite an input; choose another PREFIX")
    # An old .idx beside the new .bin would pair with it: remove it before the .bin appears.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out_idx)
    bar = _bar(progress, total, "join")
    try:
        with atomic_open(out_bin, "wb") as w:
            for p, size in zip(shards, sizes):
                with open(p, "rb") as r:
                    _copy(r, w, size, bar)
    finally:
        bar.close()
    result: dict[str, Any] = {"out": str(out_bin), "shards": len(shards), "bytes": total, "idx": None}
    if index is not None:
        with atomic_open(out_idx, "wb") as w, open(idx_src, "rb") as r:
            while chunk := r.read(COPY_BYTES):
                w.write(chunk)
        ds = IndexedDataset(prefix)  # the pair must read as a store
        result.update(idx=str(out_idx), items=len(ds), tokens=ds.n_tokens, dtype=str(ds.dtype))
    return result


def split_shards(
    prefix: str | os.PathLike,
    size: int,
    out_dir: str | os.PathLike | None = None,
    hashes_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Split ``PREFIX.bin`` into ``bytes // size + 1`` shards with Pythia's names (inverse of join), as
    pythia's ``shard_memmap.py`` does: an exact multiple of ``size`` ends in a 0-byte shard.

    The ``.idx`` is copied whole as ``{base}.idx`` into ``out_dir`` when that is another folder. With
    ``hashes_path``, writes ``filename sha256`` lines (Pythia's ``shard_hashes.txt`` order) for the shards
    and the ``.idx``.
    """
    if size < 1:
        raise ConfigError(f"`size` {size:,}: expected a positive number of bytes per shard")
    prefix = strip_prefix(prefix)
    src = Path(f"{prefix}.bin")
    if not src.is_file():
        raise NotFoundError(f"{src}: no such file; pass the PREFIX of PREFIX.bin")
    total = src.stat().st_size
    n = total // size + 1
    if n > 100000:
        raise ConfigError(f"`size` {size:,}: {total:,} bytes would make {n:,} shards; names allow at most 100,000")
    folder = Path(out_dir) if out_dir is not None else src.parent
    base = Path(prefix).name
    names, digests = [], []
    bar = _bar(progress, total, "split")
    try:
        with open(src, "rb") as r:
            for i in range(n):
                name = shard_name(base, i, n)
                h = hashlib.sha256()
                left = min(size, total - i * size)
                with atomic_open(folder / name, "wb") as w:
                    while left > 0:
                        chunk = r.read(min(COPY_BYTES, left))
                        if not chunk:
                            raise FormatError(f"{src}: ended early while writing {name}; the file changed during the split")
                        w.write(chunk)
                        h.update(chunk)
                        left -= len(chunk)
                        bar.update(len(chunk))
                names.append(name)
                digests.append(h.hexdigest())
    finally:
        bar.close()
    idx_src = Path(f"{prefix}.idx")
    idx_out = folder / f"{base}.idx"
    copied_idx = None
    if idx_src.is_file():
        if idx_out.resolve() != idx_src.resolve():
            data = idx_src.read_bytes()
            write_bytes(idx_out, data)
        copied_idx = str(idx_out)
        names.append(idx_out.name)
        digests.append(_sha256_file(idx_out))
    if hashes_path is not None:
        write_bytes(hashes_path, "".join(f"{nm} {d}\n" for d, nm in zip(digests, names)).encode())
    return {
        "shards": [str(folder / nm) for nm in names if nm.endswith(".bin")],
        "count": n,
        "size": size,
        "bytes": total,
        "idx": copied_idx,
        "hashes": str(hashes_path) if hashes_path is not None else None,
    }


def _copy(r, w, size: int, bar) -> None:
    """Copy ``size`` bytes from ``r`` to ``w``: in-kernel (copy_file_range) where possible, else by chunks."""
    w.flush()
    left = size
    if hasattr(os, "copy_file_range"):
        try:
            while left > 0:
                n = os.copy_file_range(r.fileno(), w.fileno(), min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
                bar.update(n)
        except OSError:  # not supported between these file systems: fall back to read/write
            pass
        w.seek(0, os.SEEK_END)
        r.seek(size - left)
    while left > 0 and (chunk := r.read(min(COPY_BYTES, left))):
        w.write(chunk)
        left -= len(chunk)
        bar.update(len(chunk))
    if left:
        raise FormatError(f"{r.name}: ended {left:,} bytes early while copying; the file changed during the join")


def _sha256_file(path: Path, bar=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_BYTES):
            h.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return h.hexdigest()


def read_hash_lines(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(filename, sha256)]`` from ``name sha256`` (Pythia) or ``sha256  name`` (sha256sum) lines."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"`hashes` {p}: no such file")
    out = []
    for k, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(None, 1)
        if len(parts) == 2 and _HEX64.match(parts[0]):
            digest, name = parts[0], parts[1].strip()
            if name.startswith("*"):  # sha256sum's binary-mode marker
                name = name[1:]
        elif len(parts) == 2 and _HEX64.match(parts[1].rsplit(None, 1)[-1]):
            name, digest = s.rsplit(None, 1)
        else:
            raise FormatError(
                f"{p}:{k}: expected 'filename sha256' (Pythia's order) or 'sha256  filename' (sha256sum's), with "
                f"64 hex digits, found {s[:80]!r}"
            )
        out.append((name, digest.lower()))
    if not out:
        raise FormatError(f"{p}: no 'filename sha256' or 'sha256  filename' lines found")
    return out


def verify_hashes(folder: str | os.PathLike, hashes_path: str | os.PathLike, progress: bool = True,
                  only: set[str] | None = None) -> dict[str, Any]:
    """Match / Mismatch / Missing for each listed file under ``folder``; ``ok`` only if all match. With
    ``only``, listed files outside it are ``Skipped`` (not read) and ``ok`` covers the others."""
    d = Path(folder)
    if not d.is_dir():
        raise NotFoundError(f"{d}: no such folder; pass the folder holding the shards")
    entries = read_hash_lines(hashes_path)
    present = [(n, h, d / n) for n, h in entries]
    total = sum(p.stat().st_size for n, _, p in present if p.is_file() and (only is None or n in only))
    bar = _bar(progress, total, "sha256")
    files = []
    try:
        for name, expected, p in present:
            if only is not None and name not in only:
                files.append({"file": name, "status": "Skipped", "expected": expected, "found": None})
                continue
            if not p.is_file():
                files.append({"file": name, "status": "Missing", "expected": expected, "found": None})
                continue
            found = _sha256_file(p, bar)
            files.append(
                {"file": name, "status": "Match" if found == expected else "Mismatch", "expected": expected, "found": found}
            )
    finally:
        bar.close()
    counts = {s: sum(1 for f in files if f["status"] == s) for s in ("Match", "Mismatch", "Missing", "Skipped")}
    return {
        "folder": str(d),
        "files": files,
        "match": counts["Match"],
        "mismatch": counts["Mismatch"],
        "missing": counts["Missing"],
        **({"skipped": counts["Skipped"]} if only is not None else {}),
        "ok": counts["Match"] == len(files) - counts["Skipped"],
    }
