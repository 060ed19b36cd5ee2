//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `mesh-core` for a fixed
//! number of executions each and reports how many ran and how fast. Not part
//! of `cargo xtask test`: a million runs per target is minutes of CPU, and a
//! fuzz finding is a bug report, not a flaky CI step.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::report;
use crate::setup::{ensure_cargo_fuzz, ensure_nightly};
use crate::shell::{cargo, display, output, workspace_root, Result};

/// The crate whose `fuzz/` directory holds the targets.
const FUZZ_CRATE: &str = "crates/mesh-core";

/// Executions per target when `--runs` is not given.
pub const DEFAULT_RUNS: u64 = 1_000_000;

/// What one target's run produced.
struct TargetReport {
    target: String,
    /// libFuzzer's own count and time from its `Done N runs in S second(s)`
    /// line; absent when it crashed or never got going.
    done: Option<(u64, u64)>,
    wall: Duration,
    passed: bool,
}

/// Runs `targets` (every target when empty) for `runs` executions each.
/// Every target runs even after one fails, so one crash does not hide the
/// state of the others.
pub fn fuzz(runs: u64, targets: &[String]) -> Result<()> {
    let dir = workspace_root().join(FUZZ_CRATE);
    if !dir.join("fuzz").is_dir() {
        return Err(format!("{FUZZ_CRATE}/fuzz does not exist yet: no fuzz targets to run").into());
    }
    ensure_nightly()?;
    ensure_cargo_fuzz()?;

    let mut list = cargo(&["+nightly", "fuzz", "list"]);
    list.current_dir(&dir);
    let available: Vec<String> = output(&mut list)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if available.is_empty() {
        return Err(format!("`cargo fuzz list` in {FUZZ_CRATE} found no targets").into());
    }
    let chosen: Vec<String> = if targets.is_empty() {
        available.clone()
    } else {
        if let Some(unknown) = targets.iter().find(|t| !available.contains(t)) {
            return Err(format!(
                "no fuzz target `{unknown}`; available: {}",
                available.join(", ")
            )
            .into());
        }
        targets.to_vec()
    };

    let mut reports = Vec::new();
    for (i, target) in chosen.iter().enumerate() {
        report::header(&format!(
            "[{}/{}] fuzz {target} — {runs} runs",
            i + 1,
            chosen.len()
        ));
        let report = run_target(&dir, target, runs)?;
        println!(
            "--- {target} {} after {}",
            if report.passed { "passed" } else { "FAILED" },
            report::duration(report.wall)
        );
        reports.push(report);
    }

    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let (execs, rate) = match r.done {
                // libFuzzer truncates to whole seconds: 0 means "under one".
                Some((n, 0)) => (n.to_string(), format!(">{n}")),
                Some((n, secs)) => (n.to_string(), (n / secs).to_string()),
                None => ("-".to_string(), "-".to_string()),
            };
            let result = if r.passed { "passed" } else { "FAILED" };
            vec![
                r.target.clone(),
                execs,
                rate,
                report::duration(r.wall),
                result.to_string(),
            ]
        })
        .collect();
    report::header("fuzz summary");
    report::table(
        &["target", "executions", "exec/s", "wall time", "result"],
        &rows,
    );
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.target.as_str())
        .collect();
    println!(
        "{} passed, {} failed",
        reports.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets failed: {} (a crashing input, if any, is saved under \
             {FUZZ_CRATE}/fuzz/artifacts/<target>/)",
            failed.join(", ")
        )
        .into())
    }
}

/// `cargo +nightly fuzz run <target> -- -runs=<runs>`, with libFuzzer's
/// stderr passed through line by line and read for its final count.
fn run_target(dir: &std::path::Path, target: &str, runs: u64) -> Result<TargetReport> {
    let runs_flag = format!("-runs={runs}");
    let mut cmd = cargo(&["+nightly", "fuzz", "run", target, "--", &runs_flag]);
    cmd.current_dir(dir).stderr(Stdio::piped());
    let shown = display(&cmd);
    println!("{shown}");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    let mut done = None;
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut out = std::io::stderr().lock();
        while reader.read_until(b'\n', &mut line)? > 0 {
            out.write_all(&line)?;
            done = done.or_else(|| parse_done(&String::from_utf8_lossy(&line)));
            line.clear();
        }
    }
    let status = child.wait()?;
    Ok(TargetReport {
        target: target.to_string(),
        done,
        wall: started.elapsed(),
        passed: status.success(),
    })
}

/// Parses libFuzzer's closing `Done 1000000 runs in 12 second(s)` line.
fn parse_done(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("Done ")?;
    let (execs, rest) = rest.split_once(" runs in ")?;
    let secs = rest.split_whitespace().next()?;
    Some((execs.parse().ok()?, secs.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_done_line() {
        assert_eq!(
            parse_done("Done 1000000 runs in 12 second(s)\n"),
            Some((1_000_000, 12))
        );
        assert_eq!(parse_done("#1000000 DONE   cov: 412 ft: 900"), None);
    }
}
