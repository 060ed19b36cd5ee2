//! `cargo xtask web`: the PWA in `web/dist`, which `mesh-relay` serves at
//! `/` (its default `--web-root` is `web/dist` when that exists):
//!
//! 1. `web/` (crate `mesh-web`, Leptos CSR) → wasm32 → wasm-bindgen →
//!    wasm-opt, exactly as the npm package (see [`crate::pkg`]);
//! 2. `web/index.html`, `web/style.css` and everything in `web/static/`
//!    (service worker, manifest, icons) copied next to it;
//! 3. the service worker's cache name stamped with a hash of the shell, so
//!    each build replaces the previous cache;
//! 4. the first-load transfer (HTML + JS + wasm + CSS, gzipped) reported
//!    against its budget.

use std::path::{Path, PathBuf};

use crate::pkg::{build_wasm, size};
use crate::shell::{workspace_root, Result};

/// Where the built PWA goes.
pub const DIST: &str = "web/dist";
/// First-load budget, gzipped (issue 6).
pub const FIRST_LOAD_BUDGET: u64 = 600 * 1024;
/// The files a first visit downloads.
const FIRST_LOAD: &[&str] = &["index.html", "mesh_web.js", "mesh_web_bg.wasm", "style.css"];

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| {
                format!(
                    "cannot copy {} to {}: {e}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

/// FNV-1a over the shell's bytes: a cache name, not a security property.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Builds the PWA into `web/dist`; returns that directory.
pub fn build() -> Result<PathBuf> {
    let root = workspace_root();
    let web = root.join("web");
    let dist = root.join(DIST);
    build_wasm("mesh-web", &dist, "mesh_web")?;
    for file in ["index.html", "style.css"] {
        std::fs::copy(web.join(file), dist.join(file))
            .map_err(|e| format!("cannot copy web/{file}: {e}"))?;
    }
    copy_tree(&web.join("static"), &dist)?;

    let mut hash = 0xcbf2_9ce4_8422_2325;
    for file in FIRST_LOAD.iter().chain(&["manifest.webmanifest"]) {
        let bytes = std::fs::read(dist.join(file))
            .map_err(|e| format!("cannot read {DIST}/{file}: {e}"))?;
        hash = fnv1a(hash, &bytes);
    }
    let sw = dist.join("sw.js");
    let text =
        std::fs::read_to_string(&sw).map_err(|e| format!("cannot read {DIST}/sw.js: {e}"))?;
    if !text.contains("agent-mesh-shell-BUILD") {
        return Err("web/static/sw.js has no `agent-mesh-shell-BUILD` cache name to stamp".into());
    }
    std::fs::write(
        &sw,
        text.replace(
            "agent-mesh-shell-BUILD",
            &format!("agent-mesh-shell-{hash:016x}"),
        ),
    )?;

    let mut raw = 0;
    let mut gzip = 0;
    for file in FIRST_LOAD {
        let s = size(&dist.join(file))?;
        println!("  {DIST}/{file}: {} B raw, {} B gzipped", s.raw, s.gzip);
        raw += s.raw;
        gzip += s.gzip;
    }
    println!(
        "first load (HTML + JS + wasm + CSS): {raw} B raw, {gzip} B gzipped ({:.1} KiB; budget {} KiB{})",
        gzip as f64 / 1024.0,
        FIRST_LOAD_BUDGET / 1024,
        if gzip > FIRST_LOAD_BUDGET { ", OVER" } else { "" }
    );
    Ok(dist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_service_worker_caches_every_first_load_file() {
        let sw = std::fs::read_to_string(workspace_root().join("web/static/sw.js")).unwrap();
        for file in FIRST_LOAD {
            let path = if *file == "index.html" {
                "\"/index.html\"".to_string()
            } else {
                format!("\"/{file}\"")
            };
            assert!(sw.contains(&path), "sw.js does not cache {file}");
        }
    }
}
