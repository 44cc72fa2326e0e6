//! The oracle battery: build an image of a tree with glick's writer and make every oracle look
//! at it ([`check_spec`]).
//!
//! 1. `e2fsck -fn` exits 0; `debugfs -R stats` shows the superblock DESIGN §3 asks for.
//! 2. The kernel (`mount -t ext2 -o loop,ro`) shows exactly the source tree: names, types,
//!    permission bits, owners, sizes, link counts, mtimes, device numbers, symlink targets,
//!    which names share an inode, contents, and exactly the allocated blocks
//!    ([`crate::tree::must_allocate`]: holes and all-zero blocks are holes; `st_blocks`
//!    including indirect blocks).
//! 3. `debugfs stat` of a sample of inodes agrees with the kernel.
//! 4. glick's reader agrees with the kernel on everything, inode numbers and allocation maps
//!    included, and with the source on contents; its API (offsets, lookups, odd reads) works.
//! 5. ext4-view agrees with the kernel on what it reports, and with the source on contents.
//! 6. Building again, and building a copy of the tree (other directory, other creation order,
//!    other atimes and ctimes), gives byte-identical images.
//! 7. `mke2fs -d` images of the same tree read the same through glick's reader as through the
//!    kernel.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::corpus::{Spec, Variant, materialize};
use crate::image::{Build, Built, assert_identical, build};
use crate::oracle::{
    Ext4View, Mke2fs, Mount, check_superblock, debugfs_spot_check, e2fsck, mke2fs,
};
use crate::ours::OurView;
use crate::tree::{
    ALL_FIELDS, Expect, Expected, Field, SOURCE_FIELDS, Snapshot, View as _, assert_no_diffs,
    check_alloc, compare, compare_contents, compare_contents_where, expected,
    indirect_chain_complete,
};

/// Which oracles to run (all by default).
#[derive(Clone, Debug)]
pub struct Battery {
    /// Loop-mount the image.
    pub kernel: bool,
    /// Read it with glick's reader.
    pub ours: bool,
    /// Read it with ext4-view.
    pub ext4_view: bool,
    /// `debugfs stat` this many inodes.
    pub debugfs_inodes: usize,
    /// Build again and from a copy.
    pub determinism: bool,
    /// `mke2fs -d` images to read with both the kernel and glick's reader. A block size of 0
    /// means "the block size of glick's image".
    pub mke2fs: Vec<Mke2fs>,
}

impl Default for Battery {
    fn default() -> Self {
        Battery {
            kernel: true,
            ours: true,
            ext4_view: true,
            debugfs_inodes: 64,
            determinism: true,
            mke2fs: vec![Mke2fs {
                fs_type: "ext2",
                block_size: 0,
                inode_size: 256,
            }],
        }
    }
}

/// Time spent in each step, printed at the end of a case.
#[derive(Debug, Default)]
pub struct Timings {
    steps: Vec<(String, Duration)>,
    last: Option<Instant>,
}

impl Timings {
    fn start(&mut self) {
        self.last = Some(Instant::now());
    }

    fn lap(&mut self, step: &str) {
        let now = Instant::now();
        if let Some(last) = self.last {
            self.steps.push((step.to_owned(), now - last));
        }
        self.last = Some(now);
    }

    /// One line: `step 0.12s, step 0.50s, ...`.
    #[must_use]
    pub fn summary(&self) -> String {
        let total: Duration = self.steps.iter().map(|s| s.1).sum();
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(s, d)| format!("{s} {:.2}s", d.as_secs_f64()))
            .collect();
        format!("total {:.2}s: {}", total.as_secs_f64(), parts.join(", "))
    }
}

/// What a passing case produced.
#[derive(Debug)]
pub struct Outcome {
    /// The image made by glick's writer.
    pub image: Built,
    /// Step timings.
    pub timings: Timings,
    /// The case's scratch directory (source tree, image); deleted on drop.
    pub work: tempfile::TempDir,
}

/// Materializes `spec`, images it with `build` and runs `battery` on it. The error names the
/// case and the first oracle that disagreed.
pub fn check_spec(name: &str, spec: &Spec, build: &Build, battery: &Battery) -> Result<Outcome> {
    let result = run(name, spec, build, battery);
    match &result {
        Ok(o) => eprintln!(
            "case {name}: ok; image {} bytes, {} B blocks; {}",
            o.image.size,
            o.image.block_size,
            o.timings.summary()
        ),
        Err(e) => eprintln!("case {name}: FAILED: {e:#}"),
    }
    result.with_context(|| format!("case {name} ({} entries, {build:?})", spec.len()))
}

fn run(name: &str, spec: &Spec, opts: &Build, battery: &Battery) -> Result<Outcome> {
    crate::tools::require_root("the corpus holds devices (mknod) and images are loop-mounted")?;
    for tool in ["e2fsck", "debugfs", "mke2fs", "mount", "umount"] {
        crate::tools::require_tool(tool)?;
    }
    let mut t = Timings::default();
    t.start();
    let work = tempfile::Builder::new()
        .prefix(&format!("glick-case-{name}-"))
        .tempdir()?;
    let src = work.path().join("src");
    materialize(spec, &src, Variant::default())?;
    t.lap("materialize");
    let image = build(&src, opts, &work.path().join("image.ext2"))?;
    t.lap("build");
    let bs = u64::from(image.block_size);
    if let Some(want) = opts.block_size {
        anyhow::ensure!(
            image.block_size == want,
            "asked for {want}-byte blocks, got {}",
            image.block_size
        );
    }
    e2fsck(&image.path)?;
    check_superblock(&image.path, opts.label.as_deref())?;
    t.lap("e2fsck+stats");
    let exp = expected(
        &src,
        Expect {
            block_size: bs,
            keep_owner: opts.keep_owner,
            source_date_epoch: opts.source_date_epoch,
        },
    )?;
    t.lap("expected");

    let mut kernel_snap: Option<Snapshot> = None;
    if battery.kernel {
        let mount = Mount::new(&image.path)?;
        let view = mount.view("kernel", bs);
        let snap = view.snapshot()?;
        check_against_source(&exp, &view, &snap, true)?;
        if opts.extra_bytes > 0 || opts.extra_inodes > 0 {
            check_free_space(mount.path(), opts)?;
        }
        mount.unmount()?;
        t.lap("kernel");
        if battery.debugfs_inodes > 0 {
            debugfs_spot_check(&image.path, &snap, battery.debugfs_inodes)?;
            t.lap("debugfs");
        }
        kernel_snap = Some(snap);
    }
    if battery.ours {
        let view = OurView::open(&image.path, "glick_ext2")?;
        check_our_superblock(&view, &image)?;
        let snap = view.snapshot()?;
        check_against_source(&exp, &view, &snap, true)?;
        if let Some(k) = &kernel_snap {
            assert_no_diffs(
                "kernel vs glick_ext2 on glick's image",
                &compare("kernel", k, "glick_ext2", &snap, ALL_FIELDS),
            )?;
        }
        view.check_api(&snap)?;
        t.lap("glick_ext2");
    }
    if battery.ext4_view {
        let view = Ext4View::open(&image.path)?;
        let snap = view.snapshot()?;
        let fields = [
            Field::Kind,
            Field::Perm,
            Field::Owner,
            Field::Size,
            Field::Mtime,
            Field::Target,
        ];
        assert_no_diffs(
            "source vs ext4-view",
            &compare("source", &exp.tree, "ext4-view", &snap, &fields),
        )?;
        if let Some(k) = &kernel_snap {
            let mut fields = fields.to_vec();
            fields.push(Field::DirSize);
            assert_no_diffs(
                "kernel vs ext4-view",
                &compare("kernel", k, "ext4-view", &snap, &fields),
            )?;
        }
        // ext4-view 1.0 can't read a file whose hole spans a whole indirect block (see
        // `indirect_chain_complete`); its metadata is still compared above.
        let readable = |path: &[u8]| {
            exp.alloc
                .get(path)
                .is_some_and(|want| indirect_chain_complete(want, exp.tree[path].size, bs))
        };
        let skipped = exp.alloc.keys().filter(|p| !readable(p)).count();
        if skipped > 0 {
            eprintln!(
                "case {name}: ext4-view: contents of {skipped} file(s) with a hole over a whole indirect block not compared (ext4-view 1.0 limitation)"
            );
        }
        assert_no_diffs(
            "contents through ext4-view",
            &compare_contents_where(&exp, &view, &snap, &readable),
        )?;
        t.lap("ext4-view");
    }
    if battery.determinism {
        let again = build(&src, opts, &work.path().join("again.ext2"))?;
        assert_identical(&image.path, &again.path, image.block_size)
            .context("building the same tree twice")?;
        std::fs::remove_file(&again.path)?;
        let copy = work.path().join("copy");
        materialize(
            spec,
            &copy,
            Variant {
                reverse: true,
                atime_offset: 1_000_003,
            },
        )?;
        let from_copy = build(&copy, opts, &work.path().join("copy.ext2"))?;
        assert_identical(&image.path, &from_copy.path, image.block_size).context(
            "building a copy of the tree (other directory, creation order, atimes, ctimes)",
        )?;
        std::fs::remove_file(&from_copy.path)?;
        std::fs::remove_dir_all(&copy)?;
        t.lap("determinism");
    }
    for m in &battery.mke2fs {
        let m = Mke2fs {
            block_size: if m.block_size == 0 {
                image.block_size
            } else {
                m.block_size
            },
            ..m.clone()
        };
        check_mke2fs_image(&src, spec, &exp, &m, work.path())?;
        t.lap(&format!(
            "mke2fs-{}-{}-{}",
            m.fs_type, m.block_size, m.inode_size
        ));
    }
    Ok(Outcome {
        image,
        timings: t,
        work,
    })
}

/// Metadata, allocation and contents of `view` against the source.
pub fn check_against_source(
    exp: &Expected,
    view: &dyn crate::tree::View,
    snap: &Snapshot,
    alloc_map: bool,
) -> Result<()> {
    let name = view.name();
    assert_no_diffs(
        &format!("source vs {name}"),
        &compare("source", &exp.tree, &name, snap, SOURCE_FIELDS),
    )?;
    assert_no_diffs(
        &format!("allocation seen by {name}"),
        &check_alloc(exp, &name, snap, alloc_map),
    )?;
    assert_no_diffs(
        &format!("contents through {name}"),
        &compare_contents(exp, view, snap),
    )
}

fn check_our_superblock(view: &OurView, image: &Built) -> Result<()> {
    use glick_ext2::feature;
    let sb = view.fs().superblock();
    let mut problems = Vec::new();
    if sb.feature_compat != 0 {
        problems.push(format!("feature_compat {:#x}, want 0", sb.feature_compat));
    }
    if sb.feature_incompat != feature::INCOMPAT_FILETYPE {
        problems.push(format!("feature_incompat {:#x}", sb.feature_incompat));
    }
    if sb.feature_ro_compat != feature::RO_COMPAT_SPARSE_SUPER | feature::RO_COMPAT_LARGE_FILE {
        problems.push(format!("feature_ro_compat {:#x}", sb.feature_ro_compat));
    }
    if sb.r_blocks_count != 0 || sb.inode_size != 128 || sb.rev_level != 1 {
        problems.push(format!(
            "r_blocks {} inode_size {} rev {}",
            sb.r_blocks_count, sb.inode_size, sb.rev_level
        ));
    }
    let bs = u64::from(image.block_size);
    if u64::from(sb.blocks_count) * bs != image.size {
        problems.push(format!(
            "{} blocks of {bs} bytes, but the image is {} bytes",
            sb.blocks_count, image.size
        ));
    }
    if sb.first_data_block != u32::from(bs == 1024) {
        problems.push(format!("first_data_block {}", sb.first_data_block));
    }
    anyhow::ensure!(
        problems.is_empty(),
        "superblock read by glick_ext2: {}",
        problems.join("; ")
    );
    Ok(())
}

fn check_free_space(mount: &Path, opts: &Build) -> Result<()> {
    let st = rustix::fs::statvfs(mount)?;
    let free_bytes = st.f_bavail * st.f_frsize;
    anyhow::ensure!(
        free_bytes >= opts.extra_bytes && st.f_favail >= u64::from(opts.extra_inodes),
        "asked for {} free bytes and {} free inodes, the kernel reports {free_bytes} and {}",
        opts.extra_bytes,
        opts.extra_inodes,
        st.f_favail
    );
    Ok(())
}

/// Builds an image of `src` with `mke2fs -d` and checks that glick's reader reads it exactly
/// as the kernel does (and that both read the source's contents).
pub fn check_mke2fs_image(
    src: &Path,
    spec: &Spec,
    exp: &Expected,
    m: &Mke2fs,
    work: &Path,
) -> Result<()> {
    let img = work.join(format!(
        "mke2fs-{}-{}-{}.img",
        m.fs_type, m.block_size, m.inode_size
    ));
    mke2fs(src, &img, m, spec.data_bytes(), spec.len() as u64)?;
    let what = format!(
        "mke2fs -t {} -b {} -I {} image",
        m.fs_type, m.block_size, m.inode_size
    );
    let mount = Mount::with_type(&img, m.fs_type)?;
    let kview = mount.view("kernel", u64::from(m.block_size));
    let ksnap = kview
        .snapshot()
        .with_context(|| format!("kernel walking the {what}"))?;
    let ours = OurView::open(&img, "glick_ext2")?;
    let osnap = ours
        .snapshot()
        .with_context(|| format!("glick_ext2 walking the {what}"))?;
    assert_no_diffs(
        &format!("kernel vs glick_ext2 on the {what}"),
        &compare("kernel", &ksnap, "glick_ext2", &osnap, ALL_FIELDS),
    )?;
    // Both read the source's bytes (allocation is mke2fs's business, not checked here).
    let exp = Expected {
        expect: Expect {
            block_size: u64::from(m.block_size),
            ..exp.expect
        },
        ..exp.clone()
    };
    assert_no_diffs(
        &format!("contents through the kernel ({what})"),
        &compare_contents(&exp, &kview, &ksnap),
    )?;
    assert_no_diffs(
        &format!("contents through glick_ext2 ({what})"),
        &compare_contents(&exp, &ours, &osnap),
    )?;
    ours.check_api(&osnap)?;
    mount.unmount()?;
    std::fs::remove_file(&img)?;
    Ok(())
}
