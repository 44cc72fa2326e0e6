#!/usr/bin/env python3
"""Benchmark the glick runtime (issue 4, item 5), side by side in one run.

  bench/runtime.py [--quick] [--work DIR] [--only STEP] [--no-build]

Needs root (loop mounts, the test user), cargo (it first runs `cargo build -p mkglick
--bins`, which also rebuilds the stub mkglick carries; `--no-build` skips that), gcc,
fuse2fs, squashfuse, mksquashfs.

Measures (medians of many runs), and marks the issue's targets met / not met:
  1. launch overhead: a bundle whose start is a static binary that exits at once, vs the
     binary run directly; as root, and as an unprivileged user (through fusermount3, in a
     private mount namespace where /dev/fuse is 0666 as distributions ship it);
  2. sequential read of a 512 MiB file through the mount, the bundle cached and only the
     mounted file's pages dropped (posix_fadvise DONTNEED), and warm; vs a native
     directory, the kernel's ext2 on a loop device, fuse2fs -o ro, squashfuse on an
     uncompressed squashfs;
  3. find + du -s over a 20,000-file tree, first pass after mounting and warm, vs the same;
  4. this machine's CPython as a bundle: python3 -c 'import json, sqlite3, decimal'
     (fresh mount each run) vs the same tree run from a plain directory, each loading its
     own libpython (checked); and the server's CPU time per such import.
"""

import argparse
import contextlib
import inspect
import mmap
import os
import struct
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The runtime as mkglick carries it (built by mkglick/build.rs with the size flags).
STUB = ROOT / "target/glick-stub/x86_64-unknown-linux-musl/stub/glick-stub"
MKGLICK = ROOT / "target/debug/mkglick"
MKEXT2 = ROOT / "target/debug/glick-mkext2"
MIB = 1 << 20
results = []


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, **kw)


def timed(fn):
    """Seconds `fn` took, or, if it returns a number, that number: its own timing of the
    part that counts (a run with untimed setup and teardown)."""
    t = time.perf_counter()
    own = fn()
    return own if isinstance(own, float) else time.perf_counter() - t


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_medians(fns, runs, settle=None):
    """Median time of each of `fns`, run in turn `runs` times: a host that slows down or
    speeds up during the measurement then affects all of them alike. `settle`, untimed,
    after every call: waiting for what a run leaves working to finish."""
    times = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn))
            if settle:
                settle()
    return [statistics.median(t) for t in times]


def settle(bundle, timeout=2.0):
    """Wait, untimed, until no process has `bundle` as its argv[0] any more: the helper of a
    run just timed detaches and tears its mount down after the app has exited (~2 ms of
    CPU), and that must not land on the next run, which in the fixed alternation is always
    the reference. By argv[0], not /proc/PID/exe: the helper is not dumpable, so an
    unprivileged caller cannot read its exe link. Imports its own modules: its source is
    also run on its own (SETTLE_CODE)."""
    import glob
    import time
    want = str(bundle).encode() + b"\0"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(cmdline, "rb") as f:
                    if f.read(len(want)) == want:
                        break
            except OSError:
                pass
        else:
            return
        time.sleep(0.0005)


# The same, for the program run as the test user (user_launch_code).
SETTLE_CODE = inspect.getsource(settle)


def report(name, value, unit, target=None, ok=None):
    line = f"{name:58s} {value:10.3f} {unit}"
    if target is not None:
        line += f"   target {target}: {'MET' if ok else 'NOT MET'}"
    results.append(line)
    print(line, flush=True)


def bundle(src, out):
    start = Path(src) / "start"
    if not start.exists():
        start.write_text("#!/bin/sh\nexit 0\n")
        start.chmod(0o755)
    sh(MKGLICK, "--runtime", STUB, out, src, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def loop_mounted(bundle_path, offset, mnt):
    """The bundle's image mounted read-only on `mnt` by the kernel's ext2, through a loop
    device at `offset` (`--glick-offset`), until the context ends."""
    sh("mount", "-o", f"loop,ro,offset={offset}", bundle_path, mnt)
    try:
        yield mnt
    finally:
        sh("umount", mnt)


class Mounted:
    """`BUNDLE --glick-mount`: the mountpoint, until the context ends."""

    def __init__(self, path, env=None):
        self.proc = subprocess.Popen([str(path), "--glick-mount"], stdout=subprocess.PIPE,
                                     env=env, text=True)
        self.dir = Path(self.proc.stdout.readline().strip())

    def __enter__(self):
        return self.dir

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        time.sleep(0.05)


def helper_cpu_ms(bundle_path, launcher_pid):
    """CPU time (ms) so far of the helper serving `bundle_path`: every thread of the processes
    running that bundle other than `launcher_pid` (`/proc/PID/task/*/schedstat`)."""
    total = 0
    for exe in Path("/proc").glob("[0-9]*/exe"):
        try:
            if int(exe.parent.name) == launcher_pid or os.readlink(exe) != str(bundle_path):
                continue
            for stat in (exe.parent / "task").glob("*/schedstat"):
                total += int(stat.read_text().split()[0])
        except (OSError, ValueError):
            continue
    return total / 1e6


def drop_file_pages(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def read_all(path):
    fd = os.open(path, os.O_RDONLY)
    total = 0
    while True:
        b = os.read(fd, MIB)
        if not b:
            break
        total += len(b)
    os.close(fd)
    return total


def large_folio_share(path, span=64 * MIB):
    """The share of the first `span` bytes of `path` that the page cache holds in large
    folios: each page mapped, its frame looked up in /proc/self/pagemap and its flags in
    /proc/kpageflags (root only; compound head or tail = part of a large folio). The
    cache must already hold the range (warm), so mapping it sends no requests."""
    pages = min(os.path.getsize(path), span) // 4096
    fd = os.open(path, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, pages * 4096, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    with m, open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kpf:
        for i in range(pages):
            m[i * 4096]  # fault each page in: it is cached
        real = os.path.realpath(path)
        with open("/proc/self/maps") as maps:
            base = next(int(line.split("-")[0], 16) for line in maps
                        if line.rstrip().endswith(real))
        large = 0
        for i in range(pages):
            pagemap.seek((base // 4096 + i) * 8)
            entry = struct.unpack("Q", pagemap.read(8))[0]
            if not entry >> 63:  # not present
                continue
            kpf.seek((entry & ((1 << 55) - 1)) * 8)
            if struct.unpack("Q", kpf.read(8))[0] >> 15 & 3:  # COMPOUND_HEAD | _TAIL
                large += 1
    return large / pages


def stub_size():
    size = STUB.stat().st_size
    report("stub stripped size (KiB)", size / 1024, "KiB", "<= 512 KiB", size <= 512 * 1024)


def user_launch_code(exe, bundle_path, runs, warmup):
    """A python3 -c program, run as the test user, printing the median times of `exe` and
    of `bundle_path` (seconds), interleaved as in interleaved_medians."""
    assert "'" not in SETTLE_CODE, "the program is passed inside single quotes"
    return ("import subprocess,time,statistics\n"
            + SETTLE_CODE +
            f"[subprocess.run([\"{bundle_path}\"]) for i in range({warmup})]\n"
            "t=([],[])\n"
            f"for i in range({runs}):\n"
            f" for k,a in enumerate((\"{exe}\",\"{bundle_path}\")):\n"
            "  s=time.perf_counter(); subprocess.run([a]); t[k].append(time.perf_counter()-s)\n"
            "  settle(a)\n"
            "print(statistics.median(t[0]), statistics.median(t[1]))")


def launch(work, runs):
    src = work / "true.c"
    src.write_text("int main(void) { return 0; }\n")
    exe = work / "true-static"
    sh("gcc", "-O2", "-static", "-o", exe, src)
    app = work / "launch-app"
    app.mkdir(exist_ok=True)
    shutil.copy(exe, app / "start")
    b = work / "launch.glick"
    bundle(app, b)
    for _ in range(20):
        subprocess.run([b])
    native, glick = interleaved_medians([lambda: subprocess.run([exe]),
                                         lambda: subprocess.run([b])], runs,
                                        settle=lambda: settle(b))
    report("launch: static binary run directly (ms)", native * 1e3, "ms")
    report("launch: same binary as a bundle, root (ms)", glick * 1e3, "ms")
    over = (glick - native) * 1e3
    report("launch overhead, root (ms)", over, "ms", "<= 1.5 ms", over <= 1.5)
    uid = int(subprocess.run(["id", "-u", "glicktest"], capture_output=True,
                             text=True).stdout.strip() or 0)
    if uid:
        # Unprivileged on this machine as it is: /dev/fuse is 0600 and fusermount3 opens it
        # as the user, so the chain ends in extraction.
        code = user_launch_code(exe, b, max(runs // 5, 20), 5)
        out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                              "python3", "-c", code], capture_output=True, text=True,
                             env={**os.environ, "XDG_RUNTIME_DIR": "/tmp"})
        try:
            n, g = map(float, out.stdout.split())
            report("launch overhead, user, this machine (extraction rung) (ms)",
                   (g - n) * 1e3, "ms")
        except ValueError:
            print("unprivileged launch (extraction) failed:", out.stderr.strip())
    # Unprivileged: a private namespace with a 0666 /dev/fuse, fusermount3 as the user.
    if uid:
        node = work / "fuse-node"
        script = (f"mknod -m 666 {node} c 10 229 2>/dev/null; mount --bind {node} /dev/fuse; "
                  f"exec setpriv --reuid={uid} --regid={uid} --clear-groups python3 -c '"
                  + user_launch_code(exe, b, runs, 10) + "'")
        out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                             capture_output=True, text=True,
                             env={**os.environ, "XDG_RUNTIME_DIR": "/tmp"})
        try:
            n, g = map(float, out.stdout.split())
            over = (g - n) * 1e3
            report("launch overhead, user via fusermount3 (ms)", over, "ms", "<= 3 ms",
                   over <= 3)
        except ValueError:
            print("unprivileged launch failed:", out.stderr.strip())


def sequential_read(work, runs):
    data = work / "read-src"
    data.mkdir(exist_ok=True)
    big = data / "big"
    if not big.exists() or big.stat().st_size != 512 * MIB:
        with open(big, "wb") as f:
            chunk = os.urandom(MIB)
            for _ in range(512):
                f.write(chunk)
    b = work / "read.glick"
    bundle(data, b)
    img = work / "read.img"
    sh(MKEXT2, img, data, stdout=subprocess.DEVNULL)
    read_all(b)  # the bundle is cached
    read_all(img)

    folios = {}

    def measure(name, path):
        read_all(path)
        warm = median_time(lambda: read_all(path), runs)
        folios[name] = large_folio_share(path)

        def cold():
            drop_file_pages(path)  # not timed: only the read is
            t = time.perf_counter()
            read_all(path)
            return time.perf_counter() - t
        cold_t = statistics.median(cold() for _ in range(runs))
        return 512 / cold_t, 512 / warm

    rates = {}
    rates["native"] = measure("native", big)
    with Mounted(b) as d:
        rates["glick"] = measure("glick", d / "big")
    off = subprocess.run([b, "--glick-offset"], capture_output=True, text=True).stdout.strip()
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    with loop_mounted(b, off, mnt):
        rates["kernel ext2 (loop)"] = measure("loop", mnt / "big")
    sh("fuse2fs", "-o", "ro", img, mnt, stdout=subprocess.DEVNULL)
    try:
        rates["fuse2fs -o ro"] = measure("fuse2fs", mnt / "big")
    finally:
        sh("umount", mnt)
    sq = work / "read.sqfs"
    if not sq.exists():
        sh("mksquashfs", data, sq, "-noI", "-noD", "-noF", "-noX", "-quiet",
           stdout=subprocess.DEVNULL)
    sh("squashfuse", sq, mnt)
    try:
        rates["squashfuse (uncompressed)"] = measure("squashfuse", mnt / "big")
    finally:
        sh("umount", mnt)
    for name, (cold, warm) in rates.items():
        report(f"read 512 MiB, pages dropped: {name} (MiB/s)", cold, "MiB/s")
        report(f"read 512 MiB, warm: {name} (MiB/s)", warm, "MiB/s")
    # Why warm reads differ: how much of the cached file sits in large folios (fewer
    # lookups and reference counts per byte copied). FUSE's page cache has none on
    # kernels that do not give it large folios.
    for name, share in folios.items():
        report(f"warm cache in large folios: {name} (%)", share * 100, "%")
    g_cold, g_warm = rates["glick"]
    report("server-path read (MiB/s)", g_cold, "MiB/s", ">= 2000", g_cold >= 2000)
    ratio = g_warm / rates["native"][1]
    report("warm read vs native (x)", ratio, "x", ">= 0.8x", ratio >= 0.8)


def many_files(work, runs):
    tree = work / "files-src"
    if not tree.exists():
        for d in range(200):
            sub = tree / f"d{d:03}"
            sub.mkdir(parents=True)
            for f in range(100):
                (sub / f"f{f:03}").write_bytes(b"x" * (f * 37 % 3000))
    b = work / "files.glick"
    bundle(tree, b)
    off = subprocess.run([b, "--glick-offset"], capture_output=True, text=True).stdout.strip()
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)

    def walk(d):
        subprocess.run(["find", str(d)], stdout=subprocess.DEVNULL)
        subprocess.run(["du", "-s", str(d)], stdout=subprocess.DEVNULL)

    def fresh_glick():
        with Mounted(b) as d:
            t = time.perf_counter()
            walk(d)
            return time.perf_counter() - t

    def fresh_loop():
        with loop_mounted(b, off, mnt):
            sh("sh", "-c", "echo 2 > /proc/sys/vm/drop_caches")
            t = time.perf_counter()
            walk(mnt)
            return time.perf_counter() - t

    img = work / "files.img"
    if not img.exists():
        sh(MKEXT2, img, tree, stdout=subprocess.DEVNULL)
    sq = work / "files.sqfs"
    if not sq.exists():
        sh("mksquashfs", tree, sq, "-noI", "-noD", "-noF", "-noX", "-quiet",
           stdout=subprocess.DEVNULL)
    read_all(img)
    read_all(sq)

    def fresh_fuse(cmd):
        sh(*cmd, mnt, stdout=subprocess.DEVNULL)
        try:
            t = time.perf_counter()
            walk(mnt)
            fresh = time.perf_counter() - t
            walk(mnt)
            return fresh, median_time(lambda: walk(mnt), 3)
        finally:
            sh("umount", mnt)

    others = {}
    for name, cmd in [("fuse2fs -o ro", ["fuse2fs", "-o", "ro", img]),
                      ("squashfuse", ["squashfuse", sq])]:
        runs_ = [fresh_fuse(cmd) for _ in range(runs)]
        others[name] = (statistics.median(r[0] for r in runs_),
                        statistics.median(r[1] for r in runs_))
    g_fresh = statistics.median(fresh_glick() for _ in range(runs))
    k_fresh = statistics.median(fresh_loop() for _ in range(runs))
    with Mounted(b) as d:
        walk(d)
        g_warm = median_time(lambda: walk(d), runs)
    with loop_mounted(b, off, mnt):
        walk(mnt)
        k_warm = median_time(lambda: walk(mnt), runs)
    walk(tree)
    n_warm = median_time(lambda: walk(tree), runs)
    report("find+du 20,000 files, fresh mount: glick (s)", g_fresh, "s")
    report("find+du 20,000 files, fresh mount: kernel ext2 (s)", k_fresh, "s")
    for name, (fresh, warm) in others.items():
        report(f"find+du 20,000 files, fresh mount: {name} (s)", fresh, "s")
        report(f"find+du 20,000 files, warm: {name} (s)", warm, "s")
    report("find+du fresh, glick / kernel ext2 (x)", g_fresh / k_fresh, "x", "<= 3x",
           g_fresh / k_fresh <= 3)
    report("find+du 20,000 files, warm: glick (s)", g_warm, "s")
    report("find+du 20,000 files, warm: kernel ext2 (s)", k_warm, "s")
    report("find+du 20,000 files, warm: native (s)", n_warm, "s")
    report("find+du warm, glick / kernel ext2 (x)", g_warm / k_warm, "x", "<= 2x",
           g_warm / k_warm <= 2)


def maps_outside(run, prefix, tree, env):
    """The files of `prefix` (the installed CPython) that `run`'s interpreter has mapped once
    json, sqlite3 and decimal are imported although `tree` (its copy) carries them."""
    code = "import json, sqlite3, decimal; print(open('/proc/self/maps').read())"
    out = subprocess.run([run, "-c", code], check=True, env=env, capture_output=True,
                         text=True).stdout
    fields = (line.split(None, 5) for line in out.splitlines())
    paths = {f[5] for f in fields if len(f) == 6}
    inside = str(prefix).rstrip("/") + "/"
    return {p for p in paths if p.startswith(inside) and (tree / p[len(inside):]).exists()}


def cpython(work, runs):
    prefix = Path(sys.base_prefix)
    app = work / "cpython"
    # The compiled __pycache__ files are kept: both trees then run the same .pyc files, and
    # PYTHONDONTWRITEBYTECODE below stops the plain directory from gaining more of them
    # (the bundle cannot: it is read-only).
    if not (app / "python" / "lib").exists():
        shutil.rmtree(app, ignore_errors=True)
        shutil.copytree(prefix, app / "python", symlinks=True,
                        ignore=shutil.ignore_patterns("test", "tests", "site-packages", "*.a"))
    # Self-contained: the interpreter's RUNPATH may name the installed prefix, and a bundle
    # that loads its libpython from there would measure the host's file, not the bundle's.
    # LD_LIBRARY_PATH comes before RUNPATH; maps_outside() below checks that it worked.
    ver = sysconfig.get_python_version()
    (app / "start").write_text(
        "#!/bin/sh\nd=\"$(dirname \"$0\")\"\n"
        "LD_LIBRARY_PATH=\"$d/python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\" "
        f"PYTHONHOME=\"$d/python\" exec \"$d/python/bin/python{ver}\" \"$@\"\n")
    (app / "start").chmod(0o755)
    b = work / "cpython.glick"
    bundle(app, b)  # always: the bundle must carry the runtime being measured
    args = ["-c", "import json, sqlite3, decimal"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for run in (app / "start", b):
        outside = maps_outside(run, prefix, app / "python", env)
        if outside:
            sys.exit(f"{run}: CPython maps files of the installed prefix, not its own: "
                     + ", ".join(sorted(outside)))
    # A reference for what a fresh mount costs by itself: the kernel's ext2 on a loop device
    # over the same bundle, mounted anew for each run (mount and umount untimed), so that
    # its page cache and inodes start empty as the bundle's do, while the bundle file's own
    # pages stay cached for both.
    off = subprocess.run([b, "--glick-offset"], capture_output=True, text=True,
                         check=True).stdout.strip()
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)

    def fresh_loop():
        with loop_mounted(b, off, mnt):
            t = time.perf_counter()
            subprocess.run([mnt / "start", *args], env=env)
            return time.perf_counter() - t

    plain, glick, loop = interleaved_medians(
        [lambda: subprocess.run([app / "start", *args], env=env),
         lambda: subprocess.run([b, *args], env=env),
         fresh_loop], runs, settle=lambda: settle(b))
    report("CPython import json, sqlite3, decimal: plain dir (ms)", plain * 1e3, "ms")
    report("CPython import json, sqlite3, decimal: bundle (ms)", glick * 1e3, "ms")
    report("CPython import ...: fresh kernel ext2 loop mount (ms)", loop * 1e3, "ms")
    report("CPython bundle / plain dir (x)", glick / plain, "x", "<= 1.25x",
           glick / plain <= 1.25)
    report("CPython fresh kernel ext2 loop mount / plain dir (x)", loop / plain, "x")
    report("CPython bundle / fresh kernel ext2 loop mount (x)", glick / loop, "x")
    # The server's share, steadier than the wall-clock ratio on a noisy host: its threads'
    # CPU time while one import runs from a fresh `--glick-mount`.
    server = []
    for _ in range(max(runs // 4, 5)):
        mounted = Mounted(b)
        with mounted as d:
            before = helper_cpu_ms(b.resolve(), mounted.proc.pid)
            subprocess.run([d / "start", *args], check=True, env=env)
            server.append(helper_cpu_ms(b.resolve(), mounted.proc.pid) - before)
    report("CPython: the server's CPU per import, fresh mount (ms)",
           statistics.median(server), "ms")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs")
    p.add_argument("--work", default="/var/tmp/glick-bench/runtime")
    p.add_argument("--only", choices=["size", "launch", "read", "files", "cpython"])
    p.add_argument("--no-build", action="store_true",
                   help="measure the stub and tools as they are, without cargo build first")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/runtime.py: run as root (loop mounts, the test user)")
    if not a.no_build:
        # mkglick's build script rebuilds the stub whenever its sources changed: the stub
        # measured is then the one the source tree makes, not whatever was built last.
        build = subprocess.run(["cargo", "build", "-p", "mkglick", "--bins"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if build.returncode != 0:
            sys.exit("bench/runtime.py: cargo build -p mkglick failed:\n"
                     + "\n".join(build.stderr.splitlines()[-8:]))
    source = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    print(f"source: {source or 'unknown'}" + (" (not rebuilt: --no-build)" if a.no_build else ""))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    quick = a.quick
    steps = {
        "size": stub_size,
        "launch": lambda: launch(work, 100 if quick else 500),
        "read": lambda: sequential_read(work, 3 if quick else 7),
        "files": lambda: many_files(work, 3 if quick else 7),
        "cpython": lambda: cpython(work, 10 if quick else 40),
    }
    for name, step in steps.items():
        if a.only in (None, name):
            step()
    print("\nsummary:")
    print("\n".join(results))


if __name__ == "__main__":
    main()
