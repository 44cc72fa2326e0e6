"""Timing, tool discovery, machine info, results files and table rendering."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_WORKDIR = Path(os.environ.get("GLICK_BENCH_DIR", "/var/tmp/glick-bench"))


class BenchError(Exception):
    """A failure that ends the benchmark with a one-line message."""


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    """One finished child process."""

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stderr_tail(self, lines: int = 3) -> str:
        return " | ".join([l for l in self.stderr.splitlines() if l.strip()][-lines:])


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run argv with stdout discarded and stderr captured; measure wall time and rusage.

    wait4 gives the rusage of exactly this child (RUSAGE_CHILDREN would mix runs). Its
    ru_maxrss is not kept: it includes the forked Python before exec.
    """
    errpath = Path(os.environ.get("TMPDIR", "/tmp")) / f"glick-bench-stderr.{os.getpid()}"
    with open(errpath, "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    errpath.unlink(missing_ok=True)
    return Run(
        argv=argv,
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        stderr=text,
    )


def output_of(argv: list[str]) -> str:
    """stdout+stderr of a quick informational command ('' if it cannot run)."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (res.stdout + res.stderr).strip()


def require_tools(names: list[str]) -> dict[str, str]:
    """Absolute paths of the named tools; a missing one is an error, not a skip."""
    found = {}
    missing = []
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise BenchError(
            f"missing tools: {', '.join(missing)} (install e2fsprogs, genext2fs, squashfs-tools)"
        )
    return found


def fresh(path: Path) -> Path:
    """Remove path (if present) so the next builder writes a new file."""
    path.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Repeated timed builds of one command; each run gets a fresh output file."""

    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def median_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    def to_json(self) -> dict:
        return {
            "runs": len(self.runs),
            "wall_s": [round(r.wall_s, 4) for r in self.runs],
            "median_s": round(self.median_s, 4) if self.runs else None,
            "cpu_s": [round(r.cpu_s, 4) for r in self.runs],
            "argv": self.runs[0].argv if self.runs else None,
        }


def time_runs(argv: list[str], output: Path, count: int) -> Timing:
    """Run argv `count` times; before each (untimed) remove the old output and sync,
    so no run pays for the previous run's dirty pages. Stops at the first failure."""
    timing = Timing()
    for _ in range(count):
        fresh(output)
        os.sync()
        res = run(argv)
        timing.runs.append(res)
        if not res.ok:
            break
    return timing


def warm_read(tree: Path) -> int:
    """Read every regular file once (untimed) so all builders start with a warm page cache."""
    total = 0
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            try:
                with open(path, "rb", buffering=0) as f:
                    while chunk := f.read(1 << 20):
                        total += len(chunk)
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------- ext2 facts


def dumpe2fs_header(image: Path) -> dict[str, str]:
    """`dumpe2fs -h` as a dict of 'Field name' -> value (empty if unreadable)."""
    res = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, errors="replace")
    fields = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def ext2_facts(image: Path) -> dict:
    """Block size, counts and features of an ext2 image."""
    h = dumpe2fs_header(image)

    def num(key: str) -> int | None:
        try:
            return int(h[key])
        except (KeyError, ValueError):
            return None

    return {
        "block_size": num("Block size"),
        "blocks_count": num("Block count"),
        "free_blocks": num("Free blocks"),
        "inodes_count": num("Inode count"),
        "free_inodes": num("Free inodes"),
        "inode_size": num("Inode size"),
        "reserved_blocks": num("Reserved block count"),
        "features": h.get("Filesystem features", ""),
        "revision": h.get("Filesystem revision #", ""),
    }


def fsck(image: Path) -> tuple[bool, str]:
    """`e2fsck -fn`: (clean, last lines of its output)."""
    res = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True, errors="replace")
    lines = [l for l in (res.stdout + res.stderr).splitlines() if l.strip()]
    tail = " | ".join(lines[-3:])
    return res.returncode == 0, tail


# --------------------------------------------------------------------------- machine + results


def machine_info() -> dict:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpu = next(
        (l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines() if l.startswith("model name")),
        "",
    )
    mem = next((l.split(":", 1)[1].strip() for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal")), "")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total": mem,
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "python": platform.python_version(),
        "loadavg_start": read("/proc/loadavg").strip(),
        "git_head": output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        "git_dirty": bool(output_of(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"])),
    }


def write_results(name: str, data: dict, quick: bool) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.rename(path)
    return path


def render_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Plain-text table; `rows` entries equal to None draw a separator line."""
    widths = [len(h) for h in header]
    for row in rows:
        if row is None:
            continue
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    lines = [line(header), sep]
    for row in rows:
        lines.append(sep if row is None else line(row))
    return "\n".join(lines)
