//! The user's own login shell: `getpwuid(getuid())->pw_shell` (through NSS,
//! so LDAP and systemd-homed users get theirs), then `$SHELL`, then
//! `/bin/sh`.

#![expect(
    unsafe_code,
    reason = "getpwuid_r has no safe wrapper in std or rustix"
)]

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;

pub(crate) fn login_shell() -> OsString {
    from_passwd()
        .or_else(|| std::env::var_os("SHELL").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| OsString::from("/bin/sh"))
}

fn from_passwd() -> Option<OsString> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value (null pointers and
        // zero ids) that getpwuid_r overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `pwd` and `result`
        // are live locals, `buf` is a live buffer of the length passed.
        let rc = unsafe {
            libc::getpwuid_r(
                libc::getuid(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_shell.is_null() {
            return None;
        }
        // SAFETY: on success pw_shell points to a NUL-terminated string
        // inside `buf`, which outlives this borrow.
        let shell = unsafe { CStr::from_ptr(pwd.pw_shell) };
        let bytes = shell.to_bytes();
        return (!bytes.is_empty()).then(|| OsString::from_vec(bytes.to_vec()));
    }
}
