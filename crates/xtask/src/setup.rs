//! Installing what the build and the test suites need, idempotently: each
//! `ensure_*` checks first and installs only what is missing or at the wrong
//! version, because on these machines a reinstall costs minutes
//! (wasm-bindgen-cli ~5.5 min cold, chromium ~1 min). Nothing here downloads
//! a prebuilt binary from outside the crates, npm and Debian registries: the
//! build machines reach only those, so any other download fails.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::shell::{cargo, command, output, probe, run, target_dir, workspace_root, Result};

/// The browser / Worker target every wasm crate is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// rustup components the test command uses (`cargo fmt`, `cargo clippy`).
const RUST_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// Debian's browser and its WebDriver, used by the headless-Chrome suites.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Directories (relative to the workspace root) whose npm dependencies the
/// JS/TS and page-level suites need. Empty until `pkg/` and the browser
/// tests land; add each directory here once it has a package-lock.json.
const NPM_DIRS: &[&str] = &["pkg", "web"];

/// `cargo xtask setup`: what `cargo xtask test` needs; with `all`, also what
/// the wasm, browser, npm and fuzz work needs.
pub fn setup(all: bool) -> Result<()> {
    ensure_rust_toolchain()?;
    if all {
        ensure_wasm_bindgen()?;
        ensure_browser()?;
        for dir in NPM_DIRS {
            ensure_npm_deps(&workspace_root().join(dir))?;
        }
        ensure_python_deps()?;
        ensure_nightly()?;
        ensure_cargo_fuzz()?;
    }
    println!("setup complete{}", if all { " (--all)" } else { "" });
    Ok(())
}

/// The wasm32 target and the rustfmt/clippy components, each only if
/// missing from the toolchain `rust-toolchain.toml` selects.
pub fn ensure_rust_toolchain() -> Result<()> {
    let targets = output(&mut command("rustup", &["target", "list", "--installed"]))?;
    let targets: Vec<&str> = targets.lines().map(str::trim).collect();
    if targets.contains(&WASM_TARGET) {
        println!("target {WASM_TARGET}: installed");
    } else {
        run(&mut command("rustup", &["target", "add", WASM_TARGET]))?;
    }

    let components = output(&mut command(
        "rustup",
        &["component", "list", "--installed"],
    ))?;
    let missing: Vec<&str> = RUST_COMPONENTS
        .iter()
        .copied()
        .filter(|name| !component_installed(&components, name, &targets))
        .collect();
    if missing.is_empty() {
        println!("components {}: installed", RUST_COMPONENTS.join(", "));
    } else {
        let mut args = vec!["component", "add"];
        args.extend(&missing);
        run(&mut command("rustup", &args))?;
    }
    Ok(())
}

/// Whether `rustup component list --installed` output lists `name`, which
/// rustup prints either bare or as `<name>-<target triple>`. Matching the
/// suffix against installed targets keeps `rust` from matching `rust-docs`.
fn component_installed(listing: &str, name: &str, targets: &[&str]) -> bool {
    listing.lines().map(str::trim).any(|line| {
        line == name
            || line
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|triple| targets.contains(&triple))
    })
}

/// The version of `package` in a Cargo.lock text. An error when the lock has
/// no such package or more than one version of it, since a tool that must
/// match the crate cannot match two.
pub fn locked_version(lock: &str, package: &str) -> Result<String> {
    let mut versions: Vec<String> = Vec::new();
    for entry in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            entry.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if field("name").as_deref() == Some(package) {
            if let Some(version) = field("version") {
                if !versions.contains(&version) {
                    versions.push(version);
                }
            }
        }
    }
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("Cargo.lock has no `{package}` package").into()),
        many => Err(format!(
            "Cargo.lock has several `{package}` versions ({}); pin one with `=` in [workspace.dependencies]",
            many.join(", ")
        )
        .into()),
    }
}

/// The `wasm-bindgen` crate version in the workspace's Cargo.lock: the
/// version wasm-bindgen-cli must have.
pub fn wasm_bindgen_lock_version() -> Result<String> {
    let path = workspace_root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    locked_version(&lock, "wasm-bindgen")
}

/// wasm-bindgen-cli (`wasm-bindgen`, `wasm-bindgen-test-runner`) at exactly
/// the Cargo.lock version, installed only when `wasm-bindgen --version`
/// differs. Not `--locked`: the CLI's own lock pins a webpki-roots that
/// fails to build here.
pub fn ensure_wasm_bindgen() -> Result<()> {
    let want = wasm_bindgen_lock_version()?;
    let installed = || {
        probe(&mut command("wasm-bindgen", &["--version"]))
            .and_then(|out| out.split_whitespace().nth(1).map(str::to_string))
    };
    match installed() {
        Some(have) if have == want => {
            println!("wasm-bindgen {want}: installed");
            return Ok(());
        }
        Some(have) => println!("wasm-bindgen {have} installed, Cargo.lock wants {want}"),
        None => println!("wasm-bindgen not found, Cargo.lock wants {want}"),
    }
    run(&mut cargo(&[
        "install",
        "wasm-bindgen-cli",
        "--version",
        &want,
        "--force",
    ]))?;
    match installed() {
        Some(have) if have == want => Ok(()),
        other => Err(format!(
            "installed wasm-bindgen-cli {want}, but `wasm-bindgen --version` on PATH reports {}; \
             is another wasm-bindgen earlier on PATH than ~/.cargo/bin?",
            other.as_deref().unwrap_or("nothing")
        )
        .into()),
    }
}

/// Debian's chromium and chromium-driver, installed with apt-get when either
/// binary is missing. (Never a browser download: that fails here.)
pub fn ensure_browser() -> Result<()> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        println!("{CHROMIUM}, {CHROMEDRIVER}: installed");
        return Ok(());
    }
    run(&mut command("apt-get", &["update"]))?;
    let mut install = command(
        "apt-get",
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ],
    );
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut install)?;
    for path in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(path).exists() {
            return Err(format!("apt-get finished but {path} is still missing").into());
        }
    }
    Ok(())
}

/// `npm install` (from the committed lock) in `dir` when its node_modules is missing or older than its
/// package.json / package-lock.json. npm writes
/// `node_modules/.package-lock.json` on every install, so its age says when
/// node_modules was last brought in line with the lock.
pub fn ensure_npm_deps(dir: &Path) -> Result<()> {
    let lock = dir.join("package-lock.json");
    if !lock.exists() {
        return Err(format!(
            "{} is missing; the npm packages are installed only from a committed lock file \
             (create it once with `npm install` in {})",
            lock.display(),
            dir.display()
        )
        .into());
    }
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let inputs = [modified(&lock), modified(&dir.join("package.json"))];
    let fresh = installed.is_some_and(|at| inputs.iter().flatten().all(|input| *input <= at));
    if fresh {
        println!("{}: node_modules up to date", dir.display());
        return Ok(());
    }
    // `npm install` rather than `npm ci`: with npm 11, `npm ci` rejects
    // this lock file because the `deno` package's optional per-platform
    // binaries for other systems are (by npm's own choice) not in it.
    // `npm install` with a committed lock installs exactly the locked
    // versions all the same.
    let mut install = command("npm", &["install", "--no-audit", "--no-fund"]);
    install.current_dir(dir);
    run(&mut install)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The exact pins of the Python suites' packages (the official MCP Python
/// SDK, httpx), relative to the workspace root.
pub const PY_REQUIREMENTS: &str = "crates/meshctl/tests/mcp/requirements.txt";

/// The virtualenv the Python suites run in: `target/py`.
pub fn py_venv() -> PathBuf {
    target_dir().join("py")
}

/// The virtualenv's interpreter.
pub fn py_python() -> PathBuf {
    py_venv().join("bin").join("python")
}

/// A virtualenv at `target/py` with [`PY_REQUIREMENTS`] installed, made or
/// brought up to date only when the venv is missing or the requirements
/// changed since the last install (a stamp file in the venv holds the
/// requirements it was installed from). PyPI is one of the registries the
/// build machines reach.
pub fn ensure_python_deps() -> Result<()> {
    let venv = py_venv();
    let python = py_python();
    let requirements_path = workspace_root().join(PY_REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let stamp = venv.join("requirements.installed");
    let stamp_fresh = modified(&stamp)
        .zip(modified(&requirements_path))
        .is_some_and(|(installed, wanted)| wanted <= installed);
    let same = std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements);
    if python.exists() && (stamp_fresh || same) {
        println!("{}: Python packages up to date", venv.display());
        return Ok(());
    }
    if !python.exists() {
        let venv_text = venv.to_string_lossy();
        run(&mut command("python3", &["-m", "venv", &venv_text]))
            .map_err(|e| format!("{e} (on Debian the venv module is the python3-venv package)"))?;
    }
    let requirements_text = requirements_path.to_string_lossy();
    run(&mut command(
        &python.to_string_lossy(),
        &[
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            &requirements_text,
        ],
    ))?;
    std::fs::write(&stamp, requirements)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(())
}

/// A nightly toolchain, which cargo-fuzz needs for the sanitizer flags.
pub fn ensure_nightly() -> Result<()> {
    let toolchains = output(&mut command("rustup", &["toolchain", "list"]))?;
    if toolchains.lines().any(|line| line.starts_with("nightly")) {
        println!("nightly toolchain: installed");
        return Ok(());
    }
    run(&mut command(
        "rustup",
        &["toolchain", "install", "nightly", "--profile", "minimal"],
    ))
}

/// cargo-fuzz, installed only when `cargo fuzz --version` fails.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if let Some(version) = probe(&mut cargo(&["fuzz", "--version"])) {
        println!("{}: installed", version.trim());
        return Ok(());
    }
    run(&mut cargo(&["install", "cargo-fuzz"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "wasm-bindgen-macro",
]

[[package]]
name = "wasm-bindgen-macro"
version = "0.2.131"
"#;

    #[test]
    fn reads_the_exact_package_not_a_prefix_match() {
        assert_eq!(locked_version(LOCK, "wasm-bindgen").unwrap(), "0.2.130");
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen-macro").unwrap(),
            "0.2.131"
        );
    }

    #[test]
    fn missing_or_ambiguous_versions_are_errors() {
        assert!(locked_version(LOCK, "snow").is_err());
        let two = format!("{LOCK}\n[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.99\"\n");
        let err = locked_version(&two, "wasm-bindgen")
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.2.130, 0.2.99"), "{err}");
    }

    #[test]
    fn the_workspace_lock_names_one_wasm_bindgen() {
        // The workspace pins wasm-bindgen with `=`, so this must always hold.
        wasm_bindgen_lock_version().unwrap();
    }

    #[test]
    fn components_match_bare_or_with_an_installed_triple() {
        let targets = ["x86_64-unknown-linux-gnu", "wasm32-unknown-unknown"];
        let listing = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-docs-x86_64-unknown-linux-gnu\nrust-src\n";
        assert!(component_installed(listing, "clippy", &targets));
        assert!(component_installed(listing, "rust-src", &targets));
        assert!(!component_installed(listing, "rustfmt", &targets));
        assert!(!component_installed(listing, "rust", &targets));
    }
}
