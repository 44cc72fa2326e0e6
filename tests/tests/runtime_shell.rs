//! `glick-shell DIRECTORY|GLICK [PROGRAM [ARGS...]]`: fd 1023 on a directory or on a
//! bundle's mount, the user's own shell by default, one-line errors.

use std::process::Command;

use anyhow::Result;
use glick_tests::runtime::{self, Fixture};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SHOW: &str = "cat /proc/self/fd/1023/data.txt; echo \"$GLICKROOT|$GLICK_DIR|$GLICK\"";

#[test]
fn directory_on_fd_1023() -> Result<()> {
    let fx = Fixture::script("true\n")?;
    let out = Command::new(runtime::glick_shell()?)
        .arg(&fx.app)
        .args(["sh", "-c", SHOW])
        .env_remove("GLICK")
        .output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let app = fx.app.canonicalize()?;
    assert_eq!(
        text(&out.stdout),
        format!(
            "hello from the image\n/proc/self/fd/1023|{}|\n",
            app.display()
        )
    );
    Ok(())
}

#[test]
fn bundle_mounted_on_fd_1023_and_gone_after() -> Result<()> {
    let fx = Fixture::script("true\n")?;
    let out = Command::new(runtime::glick_shell()?)
        .arg(&fx.bundle)
        .args(["sh", "-c", SHOW])
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let runtime_dir = fx.runtime().canonicalize()?;
    assert!(
        stdout.starts_with(&format!(
            "hello from the image\n/proc/self/fd/1023|{}/mnt-",
            runtime_dir.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!("|{}\n", fx.bundle.display())),
        "{stdout}"
    );
    runtime::assert_clean(&fx.bundle, &fx.runtime(), std::time::Duration::from_secs(5))
}

#[test]
fn default_program_is_the_users_login_shell() -> Result<()> {
    let fx = Fixture::script("true\n")?;
    // The test user's passwd entry says /bin/sh; $SHELL says otherwise and must lose.
    runtime::test_user()?;
    let mut cmd = runtime::as_user(&runtime::glick_shell()?)?;
    let out = cmd
        .arg(&fx.app)
        .env("SHELL", "/bin/false")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(b"echo \"shell=$0\"; cat /proc/self/fd/1023/data.txt\n")?;
            }
            child.wait_with_output()
        })?;
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "shell=/bin/sh\nhello from the image\n");
    Ok(())
}

#[test]
fn errors_are_one_line() -> Result<()> {
    let shell = runtime::glick_shell()?;
    let out = Command::new(&shell).output()?;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "glick-shell: usage: glick-shell DIRECTORY|GLICK [PROGRAM [ARGS...]]\n"
    );
    let out = Command::new(&shell).arg("/nonexistent").output()?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "glick-shell: /nonexistent: No such file or directory (os error 2)\n"
    );
    let out = Command::new(&shell)
        .args(["/", "/nonexistent-program"])
        .output()?;
    assert_eq!(out.status.code(), Some(127));
    let out = Command::new(&shell).args(["/etc/passwd"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("glick-shell: /etc/passwd: "),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(&shell).arg("--version").output()?;
    assert_eq!(
        text(&out.stdout),
        format!("glick-shell {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(&shell).arg("--help").output()?;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("DIRECTORY|GLICK"));
    Ok(())
}
