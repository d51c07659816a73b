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

/// Compiles the C programs into `out_dir`. A binary is named after a hash of
/// its source, so one built from other sources (the target directory may be
/// shared by several checkouts) is never reused.
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
        let source = std::fs::read(&src).with_context(|| format!("read {}", src.display()))?;
        let bin = out_dir.join(format!("{name}-{:016x}", fnv1a64(&source)));
        if bin.is_file() {
            return Ok(bin);
        }
        // Compiled under a temporary name, then renamed: a concurrent run never sees half a binary.
        let partial = out_dir.join(format!("{name}.{}.partial", std::process::id()));
        let out = Command::new(&cc)
            .args(["-O2", "-Wall", "-Wextra", "-o"])
            .arg(&partial)
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
        std::fs::rename(&partial, &bin).with_context(|| format!("rename {}", partial.display()))?;
        Ok(bin)
    };
    Ok(CTools {
        load: compile("zmq_load")?,
        sink: compile("zmq_sink")?,
        proxy: compile("zmq_proxy")?,
    })
}

/// FNV-1a, 64 bit: a stable hash of a source file.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
