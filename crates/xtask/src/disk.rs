//! How much disk the build takes, so a run that fills a small CI disk says
//! so in its log (which step grew `target/` by how much, and what was left)
//! instead of failing somewhere inside rustc with `No space left on device`.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// Bytes allocated to the files under `path`, as `du` counts them: not
/// following symlinks, and a file with several hard links (cargo links
/// each binary from `deps/` to the profile directory) once. 0 if `path`
/// does not exist. Unreadable entries are skipped: this is a report, not
/// an audit.
pub fn usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    usage_below(path, &mut seen)
}

fn usage_below(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if let Some(inode) = linked_inode(&meta) {
        if !seen.insert(inode) {
            return 0;
        }
    }
    let own = allocated(&meta);
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    own + entries
        .flatten()
        .map(|entry| usage_below(&entry.path(), seen))
        .sum::<u64>()
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

/// (device, inode) of a file with more than one hard link.
#[cfg(unix)]
fn linked_inode(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    (meta.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

#[cfg(not(unix))]
fn linked_inode(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Free bytes for an unprivileged writer on the filesystem that holds (or
/// will hold) `path`: that of its nearest existing ancestor, read from
/// POSIX `df -Pk`; `None` where `df` is missing or says nothing readable.
pub fn free(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let out = Command::new("df")
        .arg("-Pk")
        .arg(existing)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_df(&String::from_utf8_lossy(&out.stdout))
}

/// The "Available" column (KiB) of `df -P`'s one data line, in bytes.
fn parse_df(text: &str) -> Option<u64> {
    let line = text.lines().nth(1)?;
    let available: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(available * 1024)
}

/// Bytes as a person reads them in a log: `812 MiB`, `3.4 GiB`.
pub fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib < 1024.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_read_in_bytes() {
        let text = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                    /dev/vda         263174212  17825792  78643200      19% /\n";
        assert_eq!(parse_df(text), Some(78_643_200 * 1024));
        assert_eq!(parse_df("Filesystem\n"), None);
        assert_eq!(parse_df(""), None);
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human(812 * 1024 * 1024), "812 MiB");
        assert_eq!(human(3_650_722_201), "3.4 GiB");
    }

    #[test]
    fn usage_counts_files_below_a_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("f"), vec![1u8; 64 * 1024]).unwrap();
        let once = usage(&dir);
        std::fs::hard_link(dir.join("sub").join("f"), dir.join("g")).unwrap();
        let linked = usage(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(once >= 64 * 1024, "{once}");
        assert_eq!(linked, once, "a hard-linked file counts once");
        assert_eq!(usage(&dir), 0);
    }
}
