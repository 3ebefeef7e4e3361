//! Compatibility with clients no one here wrote: the official Svix Python SDK (`svix` from
//! PyPI) drives the real `herald` binary, and the Standard Webhooks reference verifier
//! (`standardwebhooks`) checks every webhook it delivers. The suite is
//! `tests/compat/sdk_suite.py`; `tests/compat/run.sh` makes its virtualenv (from PyPI, once),
//! starts Herald on a temporary database and a free loopback port, and runs it.
//!
//! This test never skips: without python3 or PyPI it fails, and it passes only when every
//! check of the suite passes.

use std::process::Command;

#[test]
fn svix_sdk_suite_passes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .output()
        .expect("bash runs tests/compat/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the Svix SDK compatibility suite failed ({}); its last line: {}",
        output.status,
        stdout.lines().last().unwrap_or("(no output)")
    );
}
