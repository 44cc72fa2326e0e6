#!/usr/bin/env python3
"""Benchmark of the bundle format (issue 3): making and reading a 1 GiB bundle.

  mkglick on a 1 GiB ext2 image   vs  cp of the same bytes        (median of N runs)
  mkglick peak RSS                    (image input and directory input)
  glick-extract --icon on the 1 GiB bundle                          (median of many runs)

Targets: mkglick <= 1.5x cp, peak RSS < 64 MiB, icon extraction < 5 ms.

Usage: bench/bundle.py [--size-mib 1024] [--runs 5] [--icon-runs 50] [--dir DIR] [--no-build]
Builds the release binaries first (cargo build --release -p mkglick -p glick-extract) unless
--no-build. Needs ~4x the size free in DIR (default: a temporary directory under /var/tmp).
Prints one line per figure and a final PASS/FAIL summary; exits 1 if a target is missed.
"""

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png_48():
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + bytes((x * 5) & 255 for x in range(48 * 3)) for _ in range(48))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 48, 48, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def timed(cmd):
    t = time.perf_counter()
    run(cmd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def peak_rss_kib(cmd):
    """Peak RSS of `cmd`, from GNU time's report."""
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    for line in out.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1])
    raise RuntimeError("no RSS in /usr/bin/time output:\n" + out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--icon-runs", type=int, default=50)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    if not args.no_build:
        run(["cargo", "build", "--release", "-q", "-p", "mkglick", "-p", "glick-extract"], cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    mkglick = os.path.join(target, "release", "mkglick")
    mkext2 = os.path.join(target, "release", "glick-mkext2")
    extract = os.path.join(target, "release", "glick-extract")

    work = tempfile.mkdtemp(prefix="glick-bundle-bench-", dir=args.dir or "/var/tmp")
    try:
        app = os.path.join(work, "app")
        os.makedirs(app)
        with open(os.path.join(app, "start"), "w") as f:
            f.write("#!/bin/sh\necho hello\n")
        os.chmod(os.path.join(app, "start"), 0o755)
        # One big file of incompressible data: an image of about --size-mib MiB.
        with open(os.path.join(app, "payload"), "wb") as f:
            left = (args.size_mib << 20) - (2 << 20)
            while left > 0:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
        icon = os.path.join(work, "icon.png")
        with open(icon, "wb") as f:
            f.write(png_48())
        image = os.path.join(work, "app.ext2")
        run([mkext2, image, app])
        size = os.path.getsize(image)
        print(f"image: {size / 2**20:.0f} MiB ({size} bytes)")

        out = os.path.join(work, "out")
        def fresh():
            # Each run starts with no output and no dirty pages from the previous one.
            if os.path.exists(out):
                os.remove(out)
            os.sync()
        # Warm the page cache for the input once, as both contenders read it.
        timed(["cat", image])
        cp_times, mk_times, nd_times, hash_times = [], [], [], []
        for _ in range(args.runs):
            fresh()
            cp_times.append(timed(["cp", image, out]))
            fresh()
            mk_times.append(timed([mkglick, out, image, "--icon", icon]))
            fresh()
            nd_times.append(timed([mkglick, out, image, "--icon", icon, "--no-digest"]))
            hash_times.append(timed(["sha256sum", image]))
        cp_med, mk_med = statistics.median(cp_times), statistics.median(mk_times)
        nd_med, hash_med = statistics.median(nd_times), statistics.median(hash_times)
        ratio = mk_med / cp_med
        print(f"cp:                    median {cp_med * 1000:8.1f} ms  runs {[round(t * 1000) for t in cp_times]}")
        print(f"mkglick:               median {mk_med * 1000:8.1f} ms  runs {[round(t * 1000) for t in mk_times]}")
        print(f"mkglick --no-digest:   median {nd_med * 1000:8.1f} ms  runs {[round(t * 1000) for t in nd_times]}")
        print(f"sha256sum (the floor of any SHA-256 digest): median {hash_med * 1000:8.1f} ms")
        print(f"mkglick / cp: {ratio:.2f}x (target <= 1.5x); without the digest {nd_med / cp_med:.2f}x")

        fresh()
        rss_image = peak_rss_kib([mkglick, out, image, "--icon", icon])
        print(f"mkglick peak RSS, image input:     {rss_image / 1024:6.1f} MiB (target < 64 MiB)")
        fresh()
        rss_dir = peak_rss_kib([mkglick, out, app, "--icon", icon])
        print(f"mkglick peak RSS, directory input: {rss_dir / 1024:6.1f} MiB (image in a memfd)")

        bundle = os.path.join(work, "app.glick")
        run([mkglick, bundle, image, "--icon", icon])
        os.sync()
        icon_out = os.path.join(work, "icon.out")
        icon_times = []
        for _ in range(args.icon_runs):
            icon_times.append(timed([extract, "--icon", bundle, icon_out]))
        icon_med = statistics.median(icon_times)
        print(f"glick-extract --icon on the {size / 2**20:.0f} MiB bundle: median {icon_med * 1000:.2f} ms"
              f" over {args.icon_runs} runs (min {min(icon_times) * 1000:.2f}) (target < 5 ms)")
        true_times = [timed(["/bin/true"]) for _ in range(args.icon_runs)]
        print(f"  (for scale: spawning /bin/true: median {statistics.median(true_times) * 1000:.2f} ms)")

        ok = ratio <= 1.5 and rss_image < 64 * 1024 and rss_dir < 64 * 1024 and icon_med < 0.005
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
