//! Property tests: random trees (any name bytes but `/`, every entry kind, hard links, holes,
//! written zero pages, odd modes, owners and mtimes) → image → the tree again.
//!
//! Every case: `e2fsck -fn` clean, glick's reader and ext4-view see exactly the source tree.
//! A few fixed seeds also go through the whole battery, kernel mount included.

use anyhow::Result;
use glick_tests::check::{Battery, check_spec};
use glick_tests::corpus::{RandomParams, random_spec, spec_strategy};
use glick_tests::image::Build;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Random trees with zero pages written among some files' data (which images leave out).
fn params() -> RandomParams {
    RandomParams {
        zero_pages: true,
        ..RandomParams::default()
    }
}

fn block_size() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        Just(None),
        Just(Some(1024)),
        Just(Some(2048)),
        Just(Some(4096))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 100,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_tree_round_trips(
        spec in spec_strategy(params()),
        block_size in block_size(),
        keep_owner in any::<bool>(),
    ) {
        let battery = Battery {
            kernel: false,
            debugfs_inodes: 0,
            determinism: false,
            mke2fs: Vec::new(),
            ..Battery::default()
        };
        let build = Build { block_size, keep_owner, ..Build::default() };
        check_spec("random", &spec, &build, &battery).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }
}

/// Random trees through every oracle, the kernel's mount and determinism included.
#[test]
fn random_trees_full_battery() -> Result<()> {
    for seed in 1..=8u64 {
        let spec = random_spec(seed, params());
        let build = Build {
            block_size: [None, Some(1024), Some(2048), Some(4096)][seed as usize % 4],
            keep_owner: seed % 2 == 0,
            ..Build::default()
        };
        check_spec(
            &format!("random-seed-{seed}"),
            &spec,
            &build,
            &Battery::default(),
        )?;
    }
    Ok(())
}
