"""`bench/run mkext2`: glick-mkext2 against the smallest `mke2fs -d` image and genext2fs.

For each payload (see payloads.py):
1. read the whole tree once, untimed, so every builder starts with the same warm page cache;
2. glick-mkext2 IMAGE DIR, timed N times (fresh output file each run), then `e2fsck -fn`,
   `dumpe2fs -h` (block size, counts) and one more build to check it is byte-identical;
3. mke2fs -t ext2 -d at the smallest block count that fits, found by search (below), with the
   block size glick chose, 128-byte inodes, the exact inode count, no reserved blocks, no
   resize inode; only the final, smallest build is timed;
4. genext2fs -d, minimised the same way (it has no automatic size);
5. for information, an uncompressed squashfs (size; one run).

The smallest block count is found without assuming anything about the builder: a generous
size first (doubled until it fits), then the blocks that image really uses as the first guess,
galloping away from it in steps 8, 16, 32, ... until the answer is bracketed, then bisection.
Results are cached in WORKDIR/cache.json per (tool version, payload spec, block size, inodes);
a cached answer is re-proved with two builds (it fits, one block less does not).
"""

from __future__ import annotations

import filecmp
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import payloads
from .common import (
    REPO_DIR,
    BenchError,
    Run,
    Timing,
    ext2_facts,
    fresh,
    fsck,
    log,
    machine_info,
    output_of,
    render_table,
    require_tools,
    run,
    time_runs,
    warm_read,
    write_results,
)

# Block size used for the references when glick-mkext2 is not available to choose one.
FALLBACK_BLOCK_SIZE = {"small": 1024, "big": 4096, "cpython": 1024}

TITLES = {
    "small": "20k small files",
    "big": "512 MiB file",
    "cpython": "CPython prefix",
}

MKE2FS_FEATURES = "none,filetype,sparse_super,large_file"


def mke2fs_argv(src: Path, out: Path, block_size: int | str, inodes: int | str, blocks: int | str) -> list[str]:
    # -O none,... : exactly glick's features (no resize_inode, dir_index, ext_attr);
    # -m 0: no reserved blocks; -I 128; -N: exact inode count (mke2fs rounds it up per group).
    return [
        "mke2fs", "-q", "-F", "-t", "ext2",
        "-b", str(block_size), "-I", "128", "-m", "0", "-N", str(inodes),
        "-O", MKE2FS_FEATURES, "-E", "root_owner=0:0",
        "-d", str(src), str(out), str(blocks),
    ]  # fmt: skip


def genext2fs_argv(src: Path, out: Path, block_size: int | str, inodes: int | str, blocks: int | str) -> list[str]:
    # -U: all files owned by root (as glick and mke2fs root_owner); -m 0: no reserved blocks.
    return [
        "genext2fs", "-B", str(block_size), "-b", str(blocks), "-N", str(inodes),
        "-m", "0", "-U", "-d", str(src), str(out),
    ]  # fmt: skip


def squashfs_argv(src: Path, out: Path) -> list[str]:
    return [
        "mksquashfs", str(src), str(out),
        "-noI", "-noD", "-noF", "-noX", "-no-xattrs", "-all-root", "-noappend", "-quiet", "-no-progress",
    ]  # fmt: skip


MKE2FS_SHAPE = mke2fs_argv(Path("DIR"), Path("OUT"), "BS", "N", "BLOCKS")
GENEXT2FS_SHAPE = genext2fs_argv(Path("DIR"), Path("OUT"), "BS", "N", "BLOCKS")


@dataclass
class Result:
    """One builder on one payload."""

    builder: str
    status: str = "ok"  # ok | FAILED | missing | error
    detail: str = ""
    size: int | None = None  # bytes
    timing: Timing | None = None
    fsck_ok: bool | None = None
    facts: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def time_s(self) -> float | None:
        return self.timing.median_s if self.timing and self.timing.runs else None

    def to_json(self) -> dict:
        return {
            "builder": self.builder,
            "status": self.status,
            "detail": self.detail,
            "size_bytes": self.size,
            "timing": self.timing.to_json() if self.timing else None,
            "e2fsck_fn_clean": self.fsck_ok,
            "ext2": self.facts,
            **self.extra,
        }


# --------------------------------------------------------------------------- glick binary


def find_glick(explicit: str | None, build: bool) -> tuple[Path | None, str]:
    """The glick-mkext2 to measure, and a note on where it came from."""
    if explicit:
        path = Path(explicit).resolve()
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path}: not an executable")
        return path, "given with --glick"
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_DIR / "target"))
    path = target / "release" / "glick-mkext2"
    note = "target/release (not rebuilt: --no-build)"
    if build:
        log("cargo build --release -p mkglick --bin glick-mkext2")
        res = run(["cargo", "build", "--release", "-p", "mkglick", "--bin", "glick-mkext2"], cwd=REPO_DIR)
        if res.ok:
            note = "target/release, built by cargo just before the run"
        else:
            log(f"cargo build failed: {res.stderr_tail(4)}")
            note = "target/release, STALE: cargo build failed"
    if not path.is_file():
        return None, "glick-mkext2 not built (cargo build --release -p mkglick failed or was skipped)"
    return path, note


# --------------------------------------------------------------------------- minimal size search


class Minimiser:
    """Finds the smallest block count at which `argv_for(blocks)` builds an image."""

    def __init__(self, label: str, argv_for, probe: Path):
        self.label = label
        self.argv_for = argv_for
        self.probe = probe
        self.probes: list[list] = []  # [blocks, fits]
        self.last_fail: Run | None = None

    def fits(self, blocks: int) -> bool:
        # Always a fresh file: mke2fs keeps an existing file's length.
        res = run(self.argv_for(fresh(self.probe), blocks))
        self.probes.append([blocks, res.ok])
        if not res.ok:
            self.last_fail = res
        return res.ok

    def used_blocks(self) -> int | None:
        facts = ext2_facts(self.probe)
        if facts["blocks_count"] is None or facts["free_blocks"] is None:
            return None
        return facts["blocks_count"] - facts["free_blocks"]

    def search(self, guess: int) -> int:
        hi = guess
        for _ in range(6):
            if self.fits(hi):
                break
            hi *= 2
        else:
            tail = self.last_fail.stderr_tail() if self.last_fail else ""
            raise BenchError(f"{self.label}: no image even at {hi // 2} blocks: {tail}")
        used = self.used_blocks() or hi
        lo = 0
        start = min(used, hi - 1)
        if start > 0 and self.fits(start):
            hi, step = start, 8
            while True:
                p = hi - step
                if p <= lo:
                    break
                if self.fits(p):
                    hi, step = p, step * 2
                else:
                    lo = p
                    break
        else:
            lo, step = max(start, 0), 8
            while lo + step < hi:
                if self.fits(lo + step):
                    hi = lo + step
                    break
                lo, step = lo + step, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(mid):
                hi = mid
            else:
                lo = mid
        fresh(self.probe)
        return hi


class Cache:
    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled
        try:
            self.data = json.loads(path.read_text()) if enabled else {}
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def key(parts: dict) -> str:
        return json.dumps(parts, sort_keys=True)

    def get(self, parts: dict) -> int | None:
        return self.data.get(self.key(parts)) if self.enabled else None

    def put(self, parts: dict, blocks: int) -> None:
        self.data[self.key(parts)] = blocks
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.rename(self.path)


def minimal_blocks(label: str, argv_for, probe: Path, guess: int, cache: Cache, key: dict) -> tuple[int, dict]:
    """Smallest fitting block count (cached answers re-proved) and how it was found."""
    m = Minimiser(label, argv_for, probe)
    cached = cache.get(key)
    if cached is not None:
        if m.fits(cached) and not m.fits(cached - 1):
            fresh(probe)
            return cached, {"method": "cache, re-proved", "probes": m.probes}
        log(f"{label}: cached size {cached} no longer minimal, searching again")
    blocks = m.search(guess)
    cache.put(key, blocks)
    return blocks, {"method": "search", "probes": m.probes}


def size_guess(p: payloads.Payload, block_size: int) -> int:
    """A generous first block count: data + inode tables + directories, plus a quarter."""
    data = math.ceil(p.stats["bytes"] / block_size) + p.stats["files"]
    meta = math.ceil((p.entries + 11) * 128 / block_size) + 2 * p.stats["dirs"] + p.stats["symlinks"]
    return int((data + meta) * 1.25) + 1024


# --------------------------------------------------------------------------- one payload


def bench_glick(p: payloads.Payload, glick: Path | None, why: str, images: Path, runs: int) -> Result:
    r = Result("glick-mkext2")
    if glick is None:
        r.status, r.detail = "missing", why
        return r
    out = images / f"{p.name}.glick.img"
    argv = [str(glick), str(out), str(p.path)]
    log(f"{p.name}: glick-mkext2 x{runs}")
    r.timing = time_runs(argv, out, runs)
    r.extra["binary"] = why
    if not r.timing.ok:
        r.status, r.detail = "FAILED", f"exit {r.timing.runs[-1].returncode}: {r.timing.runs[-1].stderr_tail()}"
        return r
    r.size = out.stat().st_size
    r.facts = ext2_facts(out)
    r.fsck_ok, tail = fsck(out)
    r.extra["e2fsck"] = tail
    if not r.fsck_ok:
        r.status, r.detail = "FAILED", f"e2fsck -fn: {tail}"
    bs, bc = r.facts.get("block_size"), r.facts.get("blocks_count")
    if bs and bc and bs * bc != r.size:
        r.extra["size_note"] = f"file is {r.size} bytes but the superblock says {bc} x {bs}"
    again = images / f"{p.name}.glick.again.img"
    rerun = run([str(glick), str(fresh(again)), str(p.path)])
    r.extra["reproducible"] = rerun.ok and filecmp.cmp(out, again, shallow=False)
    fresh(again)
    return r


def bench_reference(
    p: payloads.Payload,
    builder: str,
    make_argv,
    inodes: int,
    block_size: int,
    images: Path,
    runs: int,
    cache: Cache,
    version: str,
) -> Result:
    r = Result(builder)

    def argv_for(out: Path, blocks: int) -> list[str]:
        return make_argv(p.path, out, block_size, inodes, blocks)

    key = {"tool": builder, "version": version, "spec": p.spec, "block_size": block_size, "inodes": inodes,
           "argv": argv_for(Path("OUT"), 0)}  # fmt: skip
    probe = images / f"{p.name}.{builder}.probe.img"
    log(f"{p.name}: {builder}: searching the smallest size ({block_size}-byte blocks, -N {inodes})")
    try:
        blocks, how = minimal_blocks(f"{p.name}/{builder}", argv_for, probe, size_guess(p, block_size), cache, key)
    except BenchError as e:
        r.status, r.detail = "error", str(e)
        return r
    log(f"{p.name}: {builder}: {blocks} blocks after {len(how['probes'])} probe builds; timing x{runs}")
    r.extra.update({"requested_blocks": blocks, "inodes_requested": inodes, "search": how})
    out = images / f"{p.name}.{builder}.img"
    r.timing = time_runs(argv_for(out, blocks), out, runs)
    if not r.timing.ok:
        r.status, r.detail = "error", r.timing.runs[-1].stderr_tail()
        return r
    r.facts = ext2_facts(out)
    bs, bc = r.facts.get("block_size"), r.facts.get("blocks_count")
    # The filesystem's size is what the superblock says (a file may be longer or sparse).
    r.size = bs * bc if bs and bc else out.stat().st_size
    r.fsck_ok, r.extra["e2fsck"] = fsck(out)
    return r


def bench_squashfs(p: payloads.Payload, images: Path) -> Result:
    r = Result("squashfs (info)")
    out = images / f"{p.name}.squashfs"
    log(f"{p.name}: mksquashfs (uncompressed, information only)")
    r.timing = time_runs(squashfs_argv(p.path, out), out, 1)
    if not r.timing.ok:
        r.status, r.detail = "error", r.timing.runs[-1].stderr_tail()
        return r
    r.size = out.stat().st_size
    fresh(out)
    return r


def bench_payload(p, glick, why, args, images, cache, versions) -> dict:
    log(f"{p.name}: warm-up read of {p.path}")
    warm_read(p.path)
    g = bench_glick(p, glick, why, images, args.runs)
    bs = g.facts.get("block_size") if g.status == "ok" else None
    bs_source = "chosen by glick-mkext2"
    if args.block_size:
        bs, bs_source = args.block_size, "forced with --block-size"
    elif not bs:
        bs, bs_source = FALLBACK_BLOCK_SIZE[p.name], "fallback (no glick image)"
    m = bench_reference(p, "mke2fs", mke2fs_argv, p.entries + 11, bs, images, args.runs, cache, versions["mke2fs"])
    # genext2fs makes no lost+found: 10 reserved inodes + the entries.
    ge = bench_reference(
        p, "genext2fs", genext2fs_argv, p.entries + 10, bs, images, args.runs, cache, versions["genext2fs"]
    )
    sq = bench_squashfs(p, images)
    for f in images.glob(f"{p.name}.*.img"):
        if not args.keep_images:
            fresh(f)
    return {"glick": g, "mke2fs": m, "genext2fs": ge, "squashfs": sq, "block_size": bs, "block_size_source": bs_source}


# --------------------------------------------------------------------------- report


def targets(res: dict) -> dict:
    g, m, ge = res["glick"], res["mke2fs"], res["genext2fs"]
    refs = [x.size for x in (m, ge) if x.status == "ok" and x.size]
    best = min(refs) if refs else None
    t: dict = {"best_reference_bytes": best}
    if g.status != "ok":
        t["size"] = t["time"] = "FAIL" if g.status == "FAILED" else "n/a"
        return t
    t["size"] = "n/a" if best is None else ("PASS" if g.size <= best else "FAIL")
    t["time"] = "n/a" if m.time_s is None else ("PASS" if g.time_s <= m.time_s else "FAIL")
    return t


def mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.1f}"


def secs(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def ratio(a: float | None, b: float | None, digits: int = 3) -> str:
    return "" if a is None or not b else f"{a / b:.{digits}f}"


def table(all_results: dict[str, dict], runs: int) -> str:
    header = ["payload", "builder", "MB", "x best ref", "blocks", "blk size", "inodes", f"build s (median/{runs})",
              "x mke2fs", "e2fsck", "size<=ref", "time<=mke2fs"]  # fmt: skip
    rows: list = []
    for name, res in all_results.items():
        t = res["targets"]
        best = t["best_reference_bytes"]
        mke2fs_s = res["mke2fs"].time_s
        first = True
        for key in ("glick", "mke2fs", "genext2fs", "squashfs"):
            r: Result = res[key]
            label = TITLES[name] if first else ""
            first = False
            builder = r.builder + (" -min" if key == "mke2fs" else "")
            is_glick = key == "glick"
            tgt = [t["size"], t["time"]] if is_glick else ["", ""]
            fs = "" if r.fsck_ok is None else ("clean" if r.fsck_ok else "ERRORS")
            if r.status != "ok":
                shown = "FAILED" if r.status == "FAILED" else r.status
                rows.append([label, builder, shown, "", "", "", "", shown, "", fs, *tgt])
                continue
            blocks = str(r.facts.get("blocks_count") or "")
            blk = str(r.facts.get("block_size") or "")
            ino = str(r.facts.get("inodes_count") or "")
            time_s = r.time_s
            t_ratio = ratio(time_s, mke2fs_s) if key != "squashfs" else "(1 run)"
            rows.append([label, builder, mb(r.size), ratio(r.size, best, 4), blocks, blk, ino, secs(time_s), t_ratio,
                         fs, *tgt])  # fmt: skip
        rows.append(None)
    if rows and rows[-1] is None:
        rows.pop()
    return render_table(header, rows, right={2, 3, 4, 5, 6, 7, 8})


def main(args) -> int:
    tools = require_tools(["mke2fs", "genext2fs", "mksquashfs", "e2fsck", "dumpe2fs", "cp"])
    workdir = Path(args.workdir).resolve() / ("quick" if args.quick else "full")
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    glick, why = find_glick(args.glick, not args.no_build)
    def first_line(argv: list[str]) -> str:
        return (output_of(argv).splitlines() or [""])[0]

    versions = {
        "mke2fs": first_line(["mke2fs", "-V"]),
        "genext2fs": first_line(["genext2fs", "-V"]),
        "mksquashfs": first_line(["mksquashfs", "-version"]),
        "glick-mkext2": first_line([str(glick), "--version"]) if glick else None,
    }
    machine = machine_info()
    cache = Cache(workdir / "cache.json", not args.no_cache)
    all_results: dict[str, dict] = {}
    payload_info = {}
    for name in args.payload or payloads.NAMES:
        p = payloads.ensure(name, workdir, args.quick)
        payload_info[name] = {"path": str(p.path), "spec": p.spec, "stats": p.stats}
        res = bench_payload(p, glick, why, args, images, cache, versions)
        res["targets"] = targets(res)
        all_results[name] = res
    machine["loadavg_end"] = Path("/proc/loadavg").read_text().strip()

    text = table(all_results, args.runs)
    notes = [
        f"MB = 10^6 bytes; x best ref = size / smaller of mke2fs-min and genext2fs; "
        f"times are wall-clock medians of {args.runs} builds, each into a fresh file, page cache warm.",
        f"mke2fs-min: {' '.join(MKE2FS_SHAPE)}; BS = glick's block size, N = entries + 11, "
        f"BLOCKS = smallest that fits (search + bisection).",
        f"genext2fs: {' '.join(GENEXT2FS_SHAPE)}; BS = glick's block size, N = entries + 10 (it makes no "
        f"lost+found), BLOCKS = smallest that fits.",
        "squashfs: uncompressed (-noI -noD -noF -noX -no-xattrs -all-root), size for information, one run.",
        "genext2fs 1.4.2 writes no lost+found and no filetype/sparse_super features (a backup superblock "
        "in every group); glick and mke2fs-min have both, as DESIGN.md section 3 requires of glick.",
    ]
    for name, info in payload_info.items():
        st = info["stats"]
        source = f" (snapshot of {info['spec']['source']})" if info["spec"]["kind"] == "copy" else ""
        notes.append(
            f"{name}{source}: {st['files']:,} files, {st['dirs']:,} dirs, {st['symlinks']:,} symlinks, "
            f"{st['bytes'] / 1e6:.1f} MB of file data"
        )
    for name, res in all_results.items():
        g = res["glick"]
        if g.status == "ok" and g.extra.get("reproducible") is False:
            notes.append(f"{name}: glick-mkext2 built two DIFFERENT images from the same tree")
        if g.extra.get("size_note"):
            notes.append(f"{name}: {g.extra['size_note']}")
        for r in (res["mke2fs"], res["genext2fs"], res["squashfs"]):
            if r.status != "ok":
                notes.append(f"{name}: {r.builder}: {r.detail}")
        if g.status != "ok":
            notes.append(f"{name}: glick-mkext2: {g.detail}")
        if res["block_size_source"] != "chosen by glick-mkext2":
            notes.append(f"{name}: reference block size {res['block_size']} {res['block_size_source']}")
    print(text)
    print()
    for n in notes:
        print(f"  {n}")

    data = {
        "benchmark": "mkext2",
        "quick": args.quick,
        "machine": machine,
        "tools": {**tools, "versions": versions, "glick-mkext2": str(glick) if glick else None, "glick_source": why},
        "settings": {
            "runs": args.runs,
            "workdir": str(workdir),
            "mke2fs_argv": MKE2FS_SHAPE,
            "genext2fs_argv": GENEXT2FS_SHAPE,
            "squashfs_argv": squashfs_argv(Path("DIR"), Path("OUT")),
        },
        "payloads": {
            name: {
                **payload_info[name],
                "block_size": res["block_size"],
                "block_size_source": res["block_size_source"],
                "targets": res["targets"],
                "builders": {k: res[k].to_json() for k in ("glick", "mke2fs", "genext2fs", "squashfs")},
            }
            for name, res in all_results.items()
        },
        "table": text,
        "notes": notes,
    }
    path = write_results("mkext2", data, args.quick)
    log(f"results written to {path}")

    broken = any(res["glick"].status != "ok" for res in all_results.values()) or any(
        res[k].status != "ok" for res in all_results.values() for k in ("mke2fs", "genext2fs", "squashfs")
    )
    missed = any("FAIL" in (res["targets"]["size"], res["targets"]["time"]) for res in all_results.values())
    if broken:
        return 1
    return 1 if (args.check and missed) else 0
