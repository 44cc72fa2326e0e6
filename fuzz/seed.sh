#!/bin/sh
# Seeds the ext2_reader corpus with small images made by mke2fs -d (e2fsprogs), so the
# fuzzer starts from valid ext2/ext3 and mutates from there. Images are generated, not
# committed. Usage: fuzz/seed.sh  (from anywhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
corpus="$here/corpus/ext2_reader"
mkdir -p "$corpus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

src="$tmp/src"
mkdir -p "$src/dir/sub" "$src/many"
printf 'hello\n' > "$src/hello"
head -c 20000 /dev/urandom > "$src/dir/indirect"      # 1 KiB blocks: uses the indirect block
truncate -s 300K "$src/dir/sparse" && printf 'x' | dd of="$src/dir/sparse" bs=1 seek=290000 conv=notrunc 2>/dev/null
ln -s hello "$src/fast"
ln -s "$(printf '%0100d' 0)" "$src/dir/slow"
ln "$src/hello" "$src/dir/sub/hard"
mkfifo "$src/fifo"
mknod "$src/null" c 1 3 2>/dev/null || true
for i in $(seq 1 40); do : > "$src/many/file-with-a-longer-name-$i"; done

n=0
make() { # make NAME SIZE_BLOCKS MKE2FS_ARGS...
    name=$1 blocks=$2; shift 2
    rm -f "$tmp/img"
    mke2fs -F -q "$@" -d "$src" "$tmp/img" "$blocks" >/dev/null
    cp "$tmp/img" "$corpus/$name"
    n=$((n + 1))
}
make ext2-1k-128 160 -t ext2 -b 1024 -I 128 -N 128 -m 0 -O ^resize_inode
make ext2-1k-256 200 -t ext2 -b 1024 -I 256 -N 128 -m 0 -O ^resize_inode
make ext2-1k-groups 600 -t ext2 -b 1024 -I 128 -N 144 -g 256 -m 0 -O ^resize_inode
make ext2-2k 128 -t ext2 -b 2048 -I 128 -N 128 -m 0 -O ^resize_inode
make ext2-4k 64 -t ext2 -b 4096 -I 128 -N 128 -m 0 -O ^resize_inode
make ext2-1k-resize 300 -t ext2 -b 1024 -I 128 -N 128 -m 0
make ext3-1k 2048 -t ext3 -b 1024 -I 128 -N 128 -m 0
echo "seeded $n images into $corpus"
