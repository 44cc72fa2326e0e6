//! `glick-mkext2` as a user runs it: help and version, each error's exact message, no partial
//! output after a failure, and an image that `e2fsck -fn` passes.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_glick-mkext2");

fn mkext2() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// A temporary directory with a small source tree `src` and an output directory `out`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        fs::write(src.join("hello"), "hello\n").expect("write");
        fs::write(src.join("sub/data"), vec![7u8; 5000]).expect("write");
        symlink("hello", src.join("link")).expect("symlink");
        fs::create_dir(dir.path().join("out")).expect("mkdir");
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Names in `out/`, to check that nothing was left behind.
    fn out_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path("out"))
            .expect("read out")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Lets user `nobody` read the source and write to `out/`.
    fn open_to_nobody(&self) {
        for p in [self.dir.path(), &self.path("src"), &self.path("src/sub")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        fs::set_permissions(self.path("out"), fs::Permissions::from_mode(0o777)).expect("chmod");
    }
}

fn err_line(path: &Path, cause: &str) -> String {
    format!("glick-mkext2: {}: {cause}\n", path.display())
}

fn e2fsck_clean(image: &Path) {
    let out = StdCommand::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck must be installed (e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {}:\n{}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nobody` running glick-mkext2 (root reads and writes everything, so permission errors
/// need another user).
fn as_nobody(args: &[&Path]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(args);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

#[test]
fn help_shows_usage_and_an_example() {
    let out = mkext2()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.starts_with("Build a minimal, deterministic ext2 image of a directory\n"),
        "{text}"
    );
    assert!(
        text.contains("Usage: glick-mkext2 [OPTIONS] <IMAGE> <DIRECTORY>"),
        "{text}"
    );
    assert!(text.contains("--block-size <SIZE>"), "{text}");
    assert!(
        text.contains("Example:\n  glick-mkext2 app.ext2 ./app"),
        "{text}"
    );
}

#[test]
fn version_prints_name_and_version() {
    mkext2()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("glick-mkext2 {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn builds_an_e2fsck_clean_image_deterministically() {
    let f = Fixture::new();
    let image = f.path("out/app.ext2");
    mkext2()
        .arg(&image)
        .arg(f.path("src"))
        .assert()
        .success()
        .stdout("")
        .stderr("");
    e2fsck_clean(&image);
    let mode = fs::metadata(&image).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(f.out_names(), ["app.ext2"]);
    let first = fs::read(&image).expect("read");
    // Rebuilt over the old one, with every option.
    mkext2()
        .arg(&image)
        .arg(f.path("src"))
        .args(["--block-size", "2048", "--label", "app", "--keep-owner"])
        .args(["--extra-space", "1M", "--extra-inodes", "100"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .assert()
        .success();
    e2fsck_clean(&image);
    mkext2().arg(&image).arg(f.path("src")).assert().success();
    assert!(
        fs::read(&image).expect("read") == first,
        "same input, same image"
    );
    assert_eq!(f.out_names(), ["app.ext2"]);
}

#[test]
fn missing_input_is_refused() {
    let f = Fixture::new();
    let missing = f.path("nope");
    mkext2()
        .arg(f.path("out/img"))
        .arg(&missing)
        .assert()
        .code(1)
        .stdout("")
        .stderr(err_line(&missing, "No such file or directory"));
    assert!(f.out_names().is_empty());
}

#[test]
fn input_that_is_not_a_directory_is_refused() {
    let f = Fixture::new();
    let file = f.path("src/hello");
    mkext2()
        .arg(f.path("out/img"))
        .arg(&file)
        .assert()
        .code(1)
        .stderr(err_line(&file, "not a directory"));
    assert!(f.out_names().is_empty());
}

#[test]
fn output_inside_the_input_is_refused() {
    let f = Fixture::new();
    let image = f.path("src/sub/img");
    mkext2()
        .arg(&image)
        .arg(f.path("src"))
        .assert()
        .code(1)
        .stderr(err_line(
            &image,
            &format!(
                "the output is inside the input directory {}",
                f.path("src").display()
            ),
        ));
    assert!(!image.exists());
}

#[test]
fn output_in_a_missing_directory_is_refused() {
    let f = Fixture::new();
    let image = f.path("no-such-dir/img");
    mkext2()
        .arg(&image)
        .arg(f.path("src"))
        .assert()
        .code(1)
        .stderr(err_line(
            &f.path("no-such-dir"),
            "No such file or directory",
        ));
}

#[test]
fn unwritable_output_directory_is_refused() {
    let f = Fixture::new();
    f.open_to_nobody();
    fs::set_permissions(f.path("out"), fs::Permissions::from_mode(0o555)).expect("chmod");
    let image = f.path("out/img");
    as_nobody(&[&image, &f.path("src")])
        .assert()
        .code(1)
        .stderr(err_line(
            &image,
            &format!(
                "cannot create the output: {}: Permission denied",
                f.path("out").display()
            ),
        ));
    assert!(f.out_names().is_empty());
}

#[test]
fn unreadable_directory_inside_is_named() {
    let f = Fixture::new();
    f.open_to_nobody();
    fs::set_permissions(f.path("src/sub"), fs::Permissions::from_mode(0o000)).expect("chmod");
    let image = f.path("out/img");
    as_nobody(&[&image, &f.path("src")])
        .assert()
        .code(1)
        .stderr(err_line(&f.path("src/sub"), "Permission denied"));
    assert!(f.out_names().is_empty());
}

#[test]
fn unreadable_file_inside_is_named_and_nothing_is_left() {
    let f = Fixture::new();
    f.open_to_nobody();
    fs::set_permissions(f.path("src/sub/data"), fs::Permissions::from_mode(0o000)).expect("chmod");
    let image = f.path("out/img");
    as_nobody(&[&image, &f.path("src")])
        .assert()
        .code(1)
        .stderr(err_line(&f.path("src/sub/data"), "Permission denied"));
    assert!(f.out_names().is_empty());
}

#[test]
fn a_file_too_large_for_the_block_size_is_refused() {
    let f = Fixture::new();
    let huge = f.path("src/huge");
    fs::File::create(&huge)
        .expect("create")
        .set_len(17 << 30)
        .expect("set_len");
    mkext2()
        .arg(f.path("out/img"))
        .arg(f.path("src"))
        .args(["--block-size", "1024"])
        .assert()
        .code(1)
        .stderr(err_line(
            &huge,
            "file of 18253611008 bytes is larger than ext2 holds with 1024-byte blocks \
             (17247252480 bytes)",
        ));
    assert!(f.out_names().is_empty());
}

#[test]
fn too_many_subdirectories_are_refused() {
    let f = Fixture::new();
    let wide = f.path("src/wide");
    fs::create_dir(&wide).expect("mkdir");
    for i in 0..31_999 {
        fs::create_dir(wide.join(i.to_string())).expect("mkdir");
    }
    mkext2()
        .arg(f.path("out/img"))
        .arg(f.path("src"))
        .assert()
        .code(1)
        .stderr(err_line(
            &wide,
            "32001 links, more than ext2's limit of 32000",
        ));
    assert!(f.out_names().is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    mkext2().arg(f.path("out/img")).assert().code(2);
    mkext2()
        .arg(f.path("out/img"))
        .arg(f.path("src"))
        .args(["--block-size", "512"])
        .assert()
        .code(2);
    mkext2()
        .arg(f.path("out/img"))
        .arg(f.path("src"))
        .args(["--label", "this label is far too long"])
        .assert()
        .code(2);
}

#[test]
fn bad_source_date_epoch_is_refused() {
    let f = Fixture::new();
    mkext2()
        .arg(f.path("out/img"))
        .arg(f.path("src"))
        .env("SOURCE_DATE_EPOCH", "soon")
        .assert()
        .code(1)
        .stderr(
            "glick-mkext2: SOURCE_DATE_EPOCH: invalid value 'soon' (expected seconds since 1970)\n",
        );
    assert!(f.out_names().is_empty());
}
