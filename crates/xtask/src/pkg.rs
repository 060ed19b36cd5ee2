//! `cargo xtask pkg`: the npm package's generated files, from
//! `crates/mesh-wasm`:
//!
//! 1. `cargo build -p mesh-wasm --target wasm32-unknown-unknown --profile wasm-release`
//! 2. `wasm-bindgen --target web --out-dir pkg/dist --out-name mesh_wasm`
//! 3. `wasm-opt -Oz` from npm `binaryen` (never Debian's: it breaks modern
//!    wasm-bindgen output)
//!
//! and reports the `.wasm`'s raw and gzipped size, failing when it is over
//! [`GZIP_BUDGET`].

use std::path::Path;
use std::process::{Command, Stdio};

use crate::setup::{ensure_npm_deps, ensure_wasm_bindgen, WASM_TARGET};
use crate::shell::{cargo_in, command, display, run, scratch_dir, workspace_root, Result};

/// The package directory.
pub const PKG_DIR: &str = "pkg";
/// The cargo profile of WebAssembly builds (see the workspace Cargo.toml).
pub const WASM_PROFILE: &str = "wasm-release";
/// The [`scratch_dir`] of the wasm-release builds: only their `.wasm`
/// files are read, by wasm-bindgen, into `pkg/dist` and `web/dist`.
pub const WASM_SCRATCH: &str = "wasm";
/// The gzipped size the package's `.wasm` should stay under (issue 5).
pub const GZIP_BUDGET: u64 = 200 * 1024;

/// wasm-opt's features: what rustc's wasm32 target emits today.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
    "--enable-mutable-globals",
];

/// Sizes of a built `.wasm`.
pub struct WasmSize {
    /// Bytes on disk.
    pub raw: u64,
    /// Bytes after `gzip -9`.
    pub gzip: u64,
}

/// Builds `krate` for wasm32 and runs wasm-bindgen and wasm-opt on it,
/// writing `<out_dir>/<name>.js` and `<out_dir>/<name>_bg.wasm`.
pub fn build_wasm(krate: &str, out_dir: &Path, name: &str) -> Result<WasmSize> {
    ensure_wasm_bindgen()?;
    let pkg = workspace_root().join(PKG_DIR);
    ensure_npm_deps(&pkg)?;
    let build_dir = scratch_dir(WASM_SCRATCH);
    run(&mut cargo_in(
        &build_dir,
        &[
            "build",
            "-j2",
            "-p",
            krate,
            "--target",
            WASM_TARGET,
            "--profile",
            WASM_PROFILE,
        ],
    ))?;
    let wasm = build_dir
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join(format!("{}.wasm", krate.replace('-', "_")));
    let _ = std::fs::remove_dir_all(out_dir);
    let mut bindgen = command("wasm-bindgen", &["--target", "web", "--out-name", name]);
    bindgen.arg("--out-dir").arg(out_dir).arg(&wasm);
    run(&mut bindgen)?;
    let bg = out_dir.join(format!("{name}_bg.wasm"));
    let mut opt = Command::new(pkg.join("node_modules/.bin/wasm-opt"));
    opt.args(["-Oz", "--strip-debug", "--strip-producers"])
        .args(WASM_FEATURES)
        .arg(&bg)
        .arg("-o")
        .arg(&bg);
    run(&mut opt)?;
    size(&bg)
}

/// Raw and gzipped size of `path`.
pub fn size(path: &Path) -> Result<WasmSize> {
    let raw = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let mut gzip = Command::new("gzip");
    gzip.args(["-9", "-c"]).arg(path);
    let out = gzip
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{}`: {e}", display(&gzip)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed ({})", display(&gzip), out.status).into());
    }
    Ok(WasmSize {
        raw,
        gzip: out.stdout.len() as u64,
    })
}

/// `cargo xtask pkg`: builds `pkg/dist` and prints the sizes.
pub fn build() -> Result<()> {
    let dist = workspace_root().join(PKG_DIR).join("dist");
    let size = build_wasm("mesh-wasm", &dist, "mesh_wasm")?;
    println!(
        "pkg/dist/mesh_wasm_bg.wasm: {} bytes raw ({:.1} KiB), {} bytes gzipped ({:.1} KiB; budget {} KiB{})",
        size.raw,
        size.raw as f64 / 1024.0,
        size.gzip,
        size.gzip as f64 / 1024.0,
        GZIP_BUDGET / 1024,
        if size.gzip > GZIP_BUDGET { ", OVER" } else { "" }
    );
    // The budget is issue 5's target; a change that breaks it fails the
    // build (and so the test command) rather than passing unnoticed.
    if size.gzip > GZIP_BUDGET {
        return Err(format!(
            "pkg/dist/mesh_wasm_bg.wasm is {} bytes gzipped, over its budget of {GZIP_BUDGET} \
             bytes; see docs/PERFORMANCE.md for where the bytes go",
            size.gzip
        )
        .into());
    }
    Ok(())
}
