//! What the bench reads about processes from Linux `/proc`: resident
//! memory, CPU time, the open-file limit. `who` is a pid or `self`.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn read(who: &str, file: &str) -> Result<String> {
    let path = format!("/proc/{who}/{file}");
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (mesh-bench needs Linux /proc)"))
}

/// Resident set size (`VmRSS`) in KiB.
pub fn rss_kib(who: &str) -> Result<u64> {
    let status = read(who, "status")?;
    parse_rss_kib(&status).with_context(|| format!("no VmRSS in /proc/{who}/status"))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// User plus system CPU time of all the process's threads.
pub fn cpu_time(who: &str) -> Result<Duration> {
    let stat = read(who, "stat")?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("unexpected /proc/{who}/stat"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_sec() as f64,
    ))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces;
    // fields are counted from the last ')'. utime and stime are fields 14
    // and 15, i.e. the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the whole machine has spent running processes (all cores,
/// user and kernel, plus time stolen by the hypervisor), from the first
/// line of `/proc/stat`.
pub fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_machine_busy(&stat).context("unexpected /proc/stat")?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_sec() as f64,
    ))
}

fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    // Fields: user nice system idle iowait irq softirq steal (guest time
    // is already in user). Interrupt time is left out: the loopback
    // traffic under measurement is processed there, not in any process.
    let busy = [0, 1, 2, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    (f.len() >= 4).then_some(busy)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (100 on every common
/// Linux; used if `getconf` is missing).
fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The soft limit on open files (`ulimit -n`); `None` means unlimited.
pub fn open_files_limit(who: &str) -> Result<Option<u64>> {
    let limits = read(who, "limits")?;
    match parse_open_files(&limits) {
        Some(v) => Ok(v),
        None => bail!("no 'Max open files' in /proc/{who}/limits"),
    }
}

fn parse_open_files(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss() {
        let status = "Name:\tmesh-relay\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn parses_cpu_ticks_after_a_name_with_spaces() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 3 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(320));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_machine_busy_time() {
        let stat = "cpu  100 5 30 9000 7 2 3 1 0 0\ncpu0 50 2 15 4500 3 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(136));
        assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
    }

    #[test]
    fn parses_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(Some(20000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), Some(None));
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kib("self").is_ok_and(|kib| kib > 0));
        assert!(cpu_time("self").is_ok());
        assert!(machine_busy().is_ok());
        assert!(open_files_limit("self").is_ok());
    }
}
