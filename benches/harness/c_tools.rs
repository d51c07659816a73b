//! The libzmq side of the benchmark: compiles `benches/c/*.c` with `cc`
//! against Debian's libzmq (`libzmq3-dev`) at run time, so that the bench
//! compiles anywhere and only a run needs libzmq.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Paths of the compiled C programs.
pub struct CTools {
    /// Load generator: PUSHes `[topic, payload]` at full speed.
    pub load: PathBuf,
    /// Raw libzmq SUB that counts what arrives.
    pub sink: PathBuf,
    /// libzmq's own `zmq_proxy`, PULL -> PUB.
    pub proxy: PathBuf,
}

const MISSING: &str =
    "the forwarding benchmark needs a C compiler and libzmq's development files: \
                       `apt-get install -y build-essential libzmq3-dev` (Debian/Ubuntu)";

/// Compiles the C programs into `out_dir` (skipped when a binary is newer than its source).
pub fn build(out_dir: &Path) -> Result<CTools> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => bail!("no working C compiler `{cc}`; {MISSING}"),
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
    let compile = |name: &str| -> Result<PathBuf> {
        let src = src_dir.join(format!("{name}.c"));
        let bin = out_dir.join(name);
        if is_fresh(&bin, &src) {
            return Ok(bin);
        }
        let out = Command::new(&cc)
            .args(["-O2", "-Wall", "-Wextra", "-o"])
            .arg(&bin)
            .arg(&src)
            .arg("-lzmq")
            .output()
            .with_context(|| format!("run {cc}"))?;
        if !out.status.success() {
            bail!(
                "compiling {} failed; {MISSING}\n{}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(bin)
    };
    Ok(CTools {
        load: compile("zmq_load")?,
        sink: compile("zmq_sink")?,
        proxy: compile("zmq_proxy")?,
    })
}

fn is_fresh(bin: &Path, src: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(bin), modified(src)), (Some(b), Some(s)) if b > s)
}
