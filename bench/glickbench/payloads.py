"""The trees the benchmarks measure, generated deterministically and reused.

Each payload lives in WORKDIR/payloads/NAME with its spec in WORKDIR/payloads/NAME.spec.json,
written only after the tree is complete. A payload whose stored spec equals the wanted spec is
reused as it is; anything else is regenerated (into NAME.tmp, then renamed).

- small:   20,000 files of 1-8 KiB (seeded sizes and bytes), 4 x 10 x 10 directories, 50 files each
- big:     one 512 MiB file of seeded pseudo-random bytes (fully written, not sparse)
- cpython: a snapshot copy (`cp -a`) of this machine's `sys.prefix`. A copy, not the live tree,
           because running Python (this script included) writes `__pycache__` files into it,
           and a builder must never see the tree change between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError, log

MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z, fixed so generated trees are identical
NAMES = ("small", "big", "cpython")


@dataclass
class Payload:
    name: str
    path: Path
    spec: dict
    stats: dict  # see tree_stats()

    @property
    def entries(self) -> int:
        """Inodes the tree needs besides the root: every entry, hard links counted once."""
        return self.stats["entries"]


def small_spec(quick: bool) -> dict:
    fanout = [1, 2, 5] if quick else [4, 10, 10]
    return {
        "kind": "small-files",
        "version": 1,
        "fanout": fanout,
        "files_per_dir": 50,
        "min_size": 1024,
        "max_size": 8192,
        "seed": 20_000,
        "mtime": MTIME,
    }


def big_spec(quick: bool) -> dict:
    return {
        "kind": "big-file",
        "version": 1,
        "size": (8 if quick else 512) << 20,
        "seed": 512,
        "mtime": MTIME,
    }


QUICK_CPYTHON_PARTS = ["bin", "include", "lib/python3.11/json", "lib/python3.11/email"]


def cpython_spec(quick: bool) -> dict:
    source = Path(sys.prefix).resolve()
    parts = [p for p in QUICK_CPYTHON_PARTS if (source / p).exists()] if quick else ["."]
    return {
        "kind": "copy",
        "version": 1,
        "source": str(source),
        "parts": parts,
        "fingerprint": fingerprint(source, parts),
    }


def fingerprint(source: Path, parts: list[str]) -> str:
    """Hash of every entry's path, type, mode, size, mtime and link target."""
    h = hashlib.sha256()
    for part in parts:
        for path, st in walk(source / part):
            rel = os.path.relpath(path, source)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(path)))
            h.update(b"\n")
    return h.hexdigest()


def walk(top: Path):
    """(path, lstat) for top and everything below it, in a stable order, never following links."""
    stack = [os.fspath(top)]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
            stack.extend(os.path.join(path, n) for n in reversed(names))


def tree_stats(root: Path) -> dict:
    """Counts the image builders need: entries (inodes besides the root), kinds, bytes."""
    seen_links: set[tuple[int, int]] = set()
    counts = {"entries": 0, "files": 0, "dirs": 0, "symlinks": 0, "other": 0, "hardlinked": 0, "bytes": 0}
    for path, st in walk(root):
        if path == os.fspath(root):
            continue
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in seen_links:
                counts["hardlinked"] += 1
                continue
            seen_links.add(key)
        counts["entries"] += 1
        if stat.S_ISREG(st.st_mode):
            counts["files"] += 1
            counts["bytes"] += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            counts["dirs"] += 1
        elif stat.S_ISLNK(st.st_mode):
            counts["symlinks"] += 1
        else:
            counts["other"] += 1
    return counts


def make_small(dest: Path, spec: dict) -> None:
    rng = random.Random(spec["seed"])
    a, b, c = spec["fanout"]
    for i in range(a):
        for j in range(b):
            for k in range(c):
                d = dest / f"d{i:02}" / f"d{j:02}" / f"d{k:02}"
                d.mkdir(parents=True)
                for n in range(spec["files_per_dir"]):
                    size = rng.randint(spec["min_size"], spec["max_size"])
                    f = d / f"f{n:03}.dat"
                    f.write_bytes(rng.randbytes(size))
                    os.utime(f, (spec["mtime"], spec["mtime"]))
    # Directory mtimes last (creating entries changes them), deepest first.
    for path, st in sorted(walk(dest), key=lambda p: -p[0].count(os.sep)):
        if stat.S_ISDIR(st.st_mode):
            os.utime(path, (spec["mtime"], spec["mtime"]))


def make_big(dest: Path, spec: dict) -> None:
    rng = random.Random(spec["seed"])
    dest.mkdir()
    f = dest / "big.bin"
    chunk = 1 << 20
    with open(f, "wb") as out:
        for _ in range(spec["size"] // chunk):
            out.write(rng.randbytes(chunk))
        out.write(rng.randbytes(spec["size"] % chunk))
    os.utime(f, (spec["mtime"], spec["mtime"]))
    os.utime(dest, (spec["mtime"], spec["mtime"]))


def make_copy(dest: Path, spec: dict) -> None:
    # GNU cp -a keeps symlinks, hard links, modes and times; --parents keeps the sub-paths.
    if spec["parts"] == ["."]:
        argv = ["cp", "-a", "--no-target-directory", spec["source"], str(dest)]
    else:
        dest.mkdir()
        argv = ["cp", "-a", "--parents", *spec["parts"], str(dest)]
    res = subprocess.run(argv, cwd=spec["source"], capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError(f"copying {spec['source']}: {res.stderr.strip()}")
    if fingerprint(Path(spec["source"]), spec["parts"]) != spec["fingerprint"]:
        raise BenchError(f"{spec['source']} changed while it was being copied; run again")


def ensure(name: str, workdir: Path, quick: bool) -> Payload:
    """The payload `name`, generated if missing or made from a different spec."""
    spec = {"small": small_spec, "big": big_spec, "cpython": cpython_spec}[name](quick)
    base = workdir / "payloads"
    path = base / name
    marker = base / f"{name}.spec.json"
    if path.is_dir() and marker.is_file():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("spec") == spec:
            log(f"payload {name}: reusing {path}")
            return Payload(name, path, spec, stored["stats"])
    log(f"payload {name}: generating {path}")
    base.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    tmp = base / f"{name}.tmp"
    for old in (tmp, path):
        if old.exists():
            shutil.rmtree(old)
    if name == "small":
        tmp.mkdir()
        make_small(tmp, spec)
        os.utime(tmp, (spec["mtime"], spec["mtime"]))
    elif name == "big":
        make_big(tmp, spec)
    else:
        make_copy(tmp, spec)
    tmp.rename(path)
    stats = tree_stats(path)
    marker.write_text(json.dumps({"spec": spec, "stats": stats}, indent=2) + "\n")
    return Payload(name, path, spec, stats)
