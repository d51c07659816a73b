//! Skipping a test whose prerequisite (pyzmq, a browser) is missing, so that
//! the skip is seen: libtest shows a skipped-by-returning test as a plain
//! `ok` and hides what it printed with `eprintln!`, so [`skip`] writes
//! straight to the process's stderr (libtest captures only the print
//! macros), and under CI ([`under_ci`]) it fails the test instead.

use std::io::Write;

/// True when the `CI` environment variable is set to anything non-empty
/// (`true`, `1`, `yes`, a CI system's name…), not only `true`.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The line [`skip`] prints, for tests of this module.
pub fn skip_line(test: &str, why: &str) -> String {
    format!("\n!!!!!!!! SKIPPED {test}: {why} (a missing prerequisite outside CI; under CI this fails) !!!!!!!!\n")
}

/// Reports that `test` cannot run because of `why`: outside CI, writes a
/// SKIPPED line to the real stderr (shown even though the test then passes)
/// and returns `Ok(())` for the test to return; under CI, returns an error
/// so the test fails.
pub fn skip(test: &str, why: &str) -> anyhow::Result<()> {
    if under_ci() {
        anyhow::bail!("{test} cannot run under CI: {why}");
    }
    // `std::io::stderr()` written to directly is not captured by libtest.
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(skip_line(test, why).as_bytes());
    let _ = err.flush();
    Ok(())
}
