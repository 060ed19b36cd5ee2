//! The identity file: where our secret key lives on disk and how it is
//! written (owner-only permissions, never silently replaced) and read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mesh_core::Identity;

/// The identity file used when neither `--identity` nor `MESH_IDENTITY` is
/// given: `$XDG_CONFIG_HOME/agent-mesh/identity`, else
/// `$HOME/.config/agent-mesh/identity`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let config = match non_empty("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => match non_empty("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            None => bail!(
                "cannot find a config directory: neither XDG_CONFIG_HOME nor HOME is set; \
                 pass --identity FILE"
            ),
        },
    };
    Ok(config.join("agent-mesh").join("identity"))
}

/// The identity file to use: the one given, or [`default_path`].
pub fn resolve(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => default_path(),
    }
}

/// Reads the identity at `path`.
pub fn load(path: &Path) -> anyhow::Result<Identity> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no identity at {}: create one with `meshctl keygen` (or pass --identity FILE)",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read identity {}", path.display()))
        }
    };
    warn_if_readable_by_others(path);
    Identity::from_secret_text(&text)
        .with_context(|| format!("invalid identity file {}", path.display()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: identity {} is accessible by other users (mode {mode:03o}); \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes a new identity to `path` with mode 0600, creating its directory
/// with mode 0700. Refuses to replace an existing file unless `force`; a
/// forced write goes through a temporary file and a rename, so the old key
/// is never left half-overwritten.
pub fn create(path: &Path, identity: &Identity, force: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let secret = identity.to_secret_text();
    if !force {
        if path.exists() {
            bail!(
                "{} already exists: keeping it (its key would be lost for good); \
                 use --force to replace it, or --identity to write another file",
                path.display()
            );
        }
        return write_private(path, secret.as_bytes())
            .with_context(|| format!("cannot write identity {}", path.display()));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "identity".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = write_private(&tmp, secret.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write identity {}", path.display()));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `path` exclusively with owner-only permissions and writes the
/// secret followed by a newline.
fn write_private(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_round_trips_and_refuses_to_overwrite() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested").join("id");
        let first = Identity::generate()?;
        create(&path, &first, false)?;
        assert_eq!(load(&path)?.agent_id(), first.agent_id());
        let second = Identity::generate()?;
        let refused = create(&path, &second, false);
        assert!(refused.is_err());
        assert_eq!(load(&path)?.agent_id(), first.agent_id());
        create(&path, &second, true)?;
        assert_eq!(load(&path)?.agent_id(), second.agent_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
            let parent = std::fs::metadata(dir.path().join("nested"))?;
            assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        }
        Ok(())
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = load(Path::new("/nonexistent/meshctl/identity"));
        let text = format!("{:#}", err.err().map(|e| e.to_string()).unwrap_or_default());
        assert!(text.contains("meshctl keygen"), "{text}");
    }
}
