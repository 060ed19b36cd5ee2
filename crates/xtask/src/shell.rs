//! Running external commands one visible way: every command is echoed before
//! it runs, inherits the terminal, and a failure names the command that
//! failed. A CI log should read like a shell transcript.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors in xtask are messages for a person reading a terminal or CI log;
/// nothing matches on them, so a boxed error is all that is needed.
pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The workspace root. xtask lives at `<root>/crates/xtask`, so this is fixed
/// at compile time and does not depend on where `cargo xtask` was started.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where a build goes whose outputs only its own step reads (lints, bench
/// compile, the wasm-release builds copied into `pkg/dist` and `web/dist`).
/// Under CI it is `target/ci-<name>`, which [`prune`] removes when the step
/// is done, so a small CI disk holds one such build at a time beside the
/// debug build the later steps run. Elsewhere it is the shared target
/// directory, where the next run reuses it.
pub fn scratch_dir(name: &str) -> PathBuf {
    if is_ci() {
        target_dir().join(format!("ci-{name}"))
    } else {
        target_dir()
    }
}

/// Under CI, removes [`scratch_dir`]`(name)` and says how much that freed;
/// elsewhere does nothing.
pub fn prune(name: &str) -> Result<()> {
    let dir = scratch_dir(name);
    if !is_ci() || !dir.exists() {
        return Ok(());
    }
    let size = crate::disk::usage(&dir);
    std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    println!(
        "CI: removed {} ({}); no later step reads it",
        dir.display(),
        crate::disk::human(size)
    );
    Ok(())
}

/// A `cargo` command (see [`cargo`]) that builds into `dir`.
pub fn cargo_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = cargo(args);
    if dir != target_dir() {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    cmd
}

/// True when running under CI (`CI=true`, as GitHub Actions, GitLab and most
/// others set it, or `CI=1`).
pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// A command for `program` with `args`, run from the workspace root.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(workspace_root());
    cmd
}

/// A `cargo` command. It goes through the rustup proxy on PATH (not the
/// `CARGO` binary that launched xtask) so that `+nightly` works and
/// `rust-toolchain.toml` picks the toolchain. Under CI, unless the caller
/// chose otherwise, colour is off so logs carry no escape codes, and so are
/// incremental caches: a clean clone builds once, and the caches would
/// roughly double what `target/debug` takes on a CI disk.
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = command("cargo", args);
    if is_ci() {
        for (key, value) in [("CARGO_TERM_COLOR", "never"), ("CARGO_INCREMENTAL", "0")] {
            if std::env::var_os(key).is_none() {
                cmd.env(key, value);
            }
        }
    }
    cmd
}

/// Renders `cmd` the way it would be typed: `$ cargo fmt --all -- --check`,
/// prefixed by the environment it sets and the directory it runs in when
/// that is not the workspace root.
pub fn display(cmd: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    words.push(quote(&cmd.get_program().to_string_lossy()));
    words.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    let line = words.join(" ");
    match cmd.get_current_dir() {
        Some(dir) if dir != workspace_root() => {
            let shown = dir.strip_prefix(workspace_root()).unwrap_or(dir);
            format!("(in {}) $ {line}", shown.display())
        }
        _ => format!("$ {line}"),
    }
}

/// Quotes a word for display only when a shell would need it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=+./:,@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Echoes and runs `cmd` with inherited stdio; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("{shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", shown.trim_start_matches("$ ")).into())
    }
}

/// Echoes and runs `cmd`, capturing its stdout (stderr stays on the
/// terminal); an error unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    println!("{shown}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({})",
            shown.trim_start_matches("$ "),
            out.status
        )
        .into())
    }
}

/// Echoes and runs a probe such as `wasm-bindgen --version`: its stdout when
/// it exits 0, `None` when the program is missing or fails. Both are normal
/// answers for a probe, so stderr is discarded.
pub fn probe(cmd: &mut Command) -> Option<String> {
    println!("{}", display(cmd));
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = command("cargo", &["fmt", "--all", "--", "--check", "a b"]);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        assert_eq!(
            display(&cmd),
            "$ DEBIAN_FRONTEND=noninteractive cargo fmt --all -- --check 'a b'"
        );
    }

    #[test]
    fn display_names_a_directory_other_than_the_root() {
        let mut cmd = command("cargo", &["+nightly", "fuzz", "list"]);
        cmd.current_dir(workspace_root().join("crates/mesh-core"));
        assert_eq!(
            display(&cmd),
            "(in crates/mesh-core) $ cargo +nightly fuzz list"
        );
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
