//! `cargo xtask test`: the project's one test command. Every suite runs,
//! every time, in a fixed order from cheapest to dearest, and the run stops
//! at the first failing step so the log ends near the error. The closing
//! line, `N passed, M failed`, counts steps and is what CI reads.

use std::time::{Duration, Instant};

use std::process::Command;

use crate::setup::{
    ensure_browser, ensure_npm_deps, ensure_python_deps, ensure_rust_toolchain,
    ensure_wasm_bindgen, py_python, WASM_TARGET,
};
use crate::shell::{
    cargo, cargo_in, command, is_ci, prune, run, scratch_dir, target_dir, workspace_root, Result,
};
use crate::{disk, live, pkg, report, web};

/// Crates that must lint for `wasm32-unknown-unknown`; a crate joins the
/// wasm lint step by being added here.
pub const WASM_CRATES: &[&str] = &["mesh-core", "mesh-client", "mesh-wasm", "mesh-web"];

/// The crate of wasm-bindgen tests run in headless Chrome.
pub const BROWSER_TEST_CRATE: &str = "wasm-tests";

/// The Python suites of `meshctl mcp` and `meshctl gateway` (unittest).
pub const MCP_TESTS: &str = "crates/meshctl/tests/mcp";

/// Crates whose benches must at least compile (they are not run in CI).
pub const BENCH_CRATES: &[&str] = &["mesh-core"];

/// The [`scratch_dir`] of the two clippy steps.
const LINT_SCRATCH: &str = "lint";
/// The [`scratch_dir`] of the bench compile.
const BENCH_SCRATCH: &str = "bench";

/// One step of the test run.
struct Step {
    /// Short name used in headers, the summary and the failure message.
    name: &'static str,
    /// What the step proves, shown in its header.
    purpose: &'static str,
    run: fn() -> Result<()>,
    /// The scratch builds ([`scratch_dir`]) no later step reads: removed
    /// under CI when this step ends.
    prune: &'static [&'static str],
}

// The order: cheap checks first; then the builds that go to scratch
// directories (under CI each is removed when done), so that the debug build
// the remaining steps share is not on disk beside them; then that build and
// the suites that run against it.

const STEPS: &[Step] = &[
    Step {
        name: "toolchain",
        purpose: "wasm32 target, rustfmt and clippy are installed",
        run: ensure_rust_toolchain,
        prune: &[],
    },
    Step {
        name: "fmt",
        purpose: "every file is rustfmt-formatted",
        run: || {
            let mut args = vec!["fmt", "--all", "--", "--check"];
            if is_ci() {
                // rustfmt colours its diffs even into a pipe.
                args.extend(["--color", "never"]);
            }
            run(&mut cargo(&args))
        },
        prune: &[],
    },
    Step {
        name: "clippy (native)",
        purpose: "every crate and target lints clean natively",
        run: || {
            run(&mut cargo_in(
                &scratch_dir(LINT_SCRATCH),
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "-j2",
                    "--",
                    "-D",
                    "warnings",
                ],
            ))
        },
        prune: &[],
    },
    Step {
        name: "clippy (wasm32)",
        purpose: "the wasm crates lint clean for wasm32-unknown-unknown",
        run: || {
            let dir = scratch_dir(LINT_SCRATCH);
            run(&mut cargo_in(
                &dir,
                &wasm_args("clippy", &["--", "-D", "warnings"]),
            ))?;
            run(&mut cargo_in(
                &dir,
                &[
                    "clippy",
                    "-p",
                    BROWSER_TEST_CRATE,
                    "--tests",
                    "--target",
                    WASM_TARGET,
                    "-j2",
                    "--",
                    "-D",
                    "warnings",
                ],
            ))
        },
        // Both clippy steps share their build of proc macros and build
        // scripts, so it goes after the second.
        prune: &[LINT_SCRATCH],
    },
    Step {
        name: "bench (compile)",
        purpose: "benches compile (they are run by hand, not in CI)",
        run: || {
            let mut args = vec!["bench"];
            for krate in BENCH_CRATES {
                args.extend(["-p", krate]);
            }
            args.extend(["--no-run", "-j2"]);
            run(&mut cargo_in(&scratch_dir(BENCH_SCRATCH), &args))
        },
        prune: &[BENCH_SCRATCH],
    },
    Step {
        name: "tools (wasm, browser, npm, python)",
        purpose: "wasm-bindgen-cli at the Cargo.lock version, Debian chromium + chromedriver, pkg/ npm packages, the Python MCP SDK in target/py",
        run: || {
            ensure_wasm_bindgen()?;
            ensure_browser()?;
            ensure_python_deps()?;
            ensure_npm_deps(&workspace_root().join(pkg::PKG_DIR))?;
            ensure_npm_deps(&workspace_root().join("web"))
        },
        prune: &[],
    },
    Step {
        name: "npm package build",
        purpose: "mesh-wasm → wasm-bindgen → wasm-opt into pkg/dist; prints the .wasm size",
        run: pkg::build,
        prune: &[],
    },
    Step {
        name: "PWA build",
        purpose: "web/ (Leptos) → wasm-bindgen → wasm-opt into web/dist; prints the first-load size",
        run: || web::build().map(drop),
        prune: &[pkg::WASM_SCRATCH],
    },
    Step {
        name: "test",
        purpose: "unit, integration and doc tests pass",
        run: || run(&mut cargo(&["test", "--workspace", "-j2"])),
        prune: &[],
    },
    Step {
        name: "live relay + agent",
        purpose: "a real mesh-relay on 127.0.0.1 and `meshctl serve --echo` for the runtime suites",
        run: || live::env().map(drop),
        prune: &[],
    },
    Step {
        name: "wasm tests (headless Chrome)",
        purpose: "wasm-bindgen-test in Debian chromium against the live relay and agent",
        run: || {
            let mut cmd = cargo(&[
                "test",
                "-j2",
                "-p",
                BROWSER_TEST_CRATE,
                "--target",
                WASM_TARGET,
            ]);
            cmd.env("CHROMEDRIVER", "/usr/bin/chromedriver")
                .env(
                    "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                    "wasm-bindgen-test-runner",
                )
                .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "npm: Node",
        purpose: "the package in Node (node --test) against the live relay and agent",
        run: || {
            let mut cmd = command("node", &["--test", "test/node.test.mjs"]);
            cmd.current_dir(workspace_root().join(pkg::PKG_DIR));
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "npm: browser (Chromium)",
        purpose: "the package in headless Debian chromium (playwright-core), README example included",
        run: || {
            let mut cmd = command("node", &["--test", "test/browser.test.mjs"]);
            cmd.current_dir(workspace_root().join(pkg::PKG_DIR));
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "npm: Deno",
        purpose: "the package in Deno (deno test, type-checked) against the live relay and agent",
        run: || {
            let mut cmd = command(
                "node_modules/.bin/deno",
                &[
                    "test",
                    "--allow-read",
                    "--allow-net",
                    "--allow-env",
                    "--allow-run",
                    "test/deno.test.ts",
                ],
            );
            cmd.current_dir(workspace_root().join(pkg::PKG_DIR))
                .env("DENO_NO_UPDATE_CHECK", "1")
                .env("NO_COLOR", "1");
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "npm: workerd",
        purpose: "the package in a Cloudflare Worker (Miniflare's workerd) against the live relay and agent",
        run: || {
            let mut cmd = command("node", &["--test", "test/workerd.test.mjs"]);
            cmd.current_dir(workspace_root().join(pkg::PKG_DIR));
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "meshctl mcp + gateway (Python MCP SDK)",
        purpose: "`meshctl mcp` over stdio and streamable HTTP with the official MCP Python SDK, `meshctl gateway` with httpx and curl, against the live relay and agent",
        run: || {
            let tests = workspace_root().join(MCP_TESTS);
            let tests = tests.to_string_lossy();
            let mut cmd = command(
                &py_python().to_string_lossy(),
                &["-m", "unittest", "discover", "-v", "-s", &tests, "-t", &tests],
            );
            // Built by the live fixture, which `run_live` starts first.
            cmd.env("MESHCTL", target_dir().join("debug").join("meshctl"))
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONUNBUFFERED", "1");
            run_live(cmd)
        },
        prune: &[],
    },
    Step {
        name: "PWA end to end (Chromium)",
        purpose: "two browser profiles chat through a real relay; offline delivery, streaming + cancel, reload, service worker",
        run: || {
            live::build_binaries(false)?;
            let root = workspace_root();
            let bins = target_dir().join("debug");
            let shots = target_dir().join("web-shots");
            let mut cmd = command("node", &["--test", "tests/e2e.test.mjs"]);
            cmd.current_dir(root.join("web"))
                .env("MESH_RELAY_BIN", bins.join("mesh-relay"))
                .env("MESHCTL_BIN", bins.join("meshctl"))
                .env("MESH_WEB_DIST", root.join(web::DIST))
                .env("MESH_SHOTS_DIR", &shots);
            run(&mut cmd)?;
            println!("PWA screenshots: {}", shots.display());
            Ok(())
        },
        prune: &[],
    },
];

/// Runs `cmd` with the live services' environment.
fn run_live(mut cmd: Command) -> Result<()> {
    for (key, value) in live::env()? {
        cmd.env(key, value);
    }
    run(&mut cmd)
}

/// `cargo <sub> -p <each wasm crate> --target wasm32-unknown-unknown -j2 <extra>`.
fn wasm_args<'a>(sub: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![sub];
    for krate in WASM_CRATES {
        args.extend(["-p", krate]);
    }
    args.extend(["--target", WASM_TARGET, "-j2"]);
    args.extend(extra);
    args
}

/// The most a cold run has in `target/` at once, with some room, measured
/// on a fresh clone (docs/PERFORMANCE.md): under CI, with the scratch
/// builds pruned, 1.3 GiB; elsewhere, everything kept, 3.3 GiB without
/// incremental caches (they add more). Below this much free disk the run
/// warns before it starts, since rustc's own `No space left on device`
/// comes late and names no cause.
fn disk_needed() -> u64 {
    const GIB: u64 = 1024 * 1024 * 1024;
    if is_ci() {
        2 * GIB
    } else {
        4 * GIB
    }
}

/// How a step ended.
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    NotRun,
}

/// A step's outcome and the disk `target/` took when it ended (before its
/// scratch builds were pruned).
struct Ran {
    outcome: Outcome,
    target: Option<u64>,
}

/// Runs every step and prints the summary; true when every step passed.
pub fn test() -> bool {
    let total = Instant::now();
    check_disk();
    let (ran, failure) = run_steps();
    live::stop();
    summarise(total, &ran, failure.as_deref())
}

/// Says how much disk there is, and warns when it is less than a cold run
/// needs.
fn check_disk() {
    let target = target_dir();
    let used = disk::usage(&target);
    let Some(free) = disk::free(&target_dir()) else {
        println!(
            "disk: target/ holds {}; free space unknown (no df)",
            disk::human(used)
        );
        return;
    };
    println!(
        "disk: target/ holds {}, {} free",
        disk::human(used),
        disk::human(free)
    );
    let needed = disk_needed();
    if free + used < needed {
        println!(
            "WARNING: a cold run needs about {} for target/ and {} is available; \
             steps may fail with `No space left on device`",
            disk::human(needed),
            disk::human(free + used)
        );
    }
}

/// Runs the steps in order until one fails; the outcomes, and the failure.
fn run_steps() -> (Vec<Ran>, Option<String>) {
    let mut ran = Vec::with_capacity(STEPS.len());
    let mut failure = None;
    for (i, step) in STEPS.iter().enumerate() {
        if failure.is_some() {
            ran.push(Ran {
                outcome: Outcome::NotRun,
                target: None,
            });
            continue;
        }
        let n = i + 1;
        let of = STEPS.len();
        report::header(&format!("[{n}/{of}] {} — {}", step.name, step.purpose));
        let started = Instant::now();
        let mut result = (step.run)();
        let took = started.elapsed();
        // Measured before pruning: what the step needed at its end.
        let target = disk::usage(&target_dir());
        let free = disk::free(&target_dir())
            .map(|f| format!(", {} free", disk::human(f)))
            .unwrap_or_default();
        for name in step.prune {
            if let Err(err) = prune(name) {
                result = result.and(Err(err));
            }
        }
        let (outcome, verb) = match result {
            Ok(()) => (Outcome::Passed(took), "passed in"),
            Err(err) => {
                failure = Some(format!("step `{}` failed: {err}", step.name));
                (Outcome::Failed(took), "FAILED after")
            }
        };
        println!(
            "--- [{n}/{of}] {} {verb} {} (target/ {}{free})",
            step.name,
            report::duration(took),
            disk::human(target)
        );
        ran.push(Ran {
            outcome,
            target: Some(target),
        });
    }
    (ran, failure)
}

/// Prints the summary table and `N passed, M failed`; true if all passed.
fn summarise(total: Instant, ran: &[Ran], failure: Option<&str>) -> bool {
    let rows: Vec<Vec<String>> = STEPS
        .iter()
        .zip(ran)
        .enumerate()
        .map(|(i, (step, Ran { outcome, target }))| {
            let (result, time) = match outcome {
                Outcome::Passed(d) => ("passed", report::duration(*d)),
                Outcome::Failed(d) => ("FAILED", report::duration(*d)),
                Outcome::NotRun => ("not run (an earlier step failed)", String::new()),
            };
            vec![
                (i + 1).to_string(),
                step.name.to_string(),
                time,
                target.map(disk::human).unwrap_or_default(),
                result.to_string(),
            ]
        })
        .collect();
    report::header("summary");
    report::table(&["#", "step", "time", "target/", "result"], &rows);
    println!("  total {}", report::duration(total.elapsed()));

    let passed = ran
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Passed(_)))
        .count();
    let failed = ran
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if let Some(message) = failure {
        println!("xtask test: {message}");
    }
    println!("{passed} passed, {failed} failed");
    failure.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_steps_cover_every_wasm_crate() {
        let args = wasm_args("clippy", &["--", "-D", "warnings"]);
        for krate in WASM_CRATES {
            assert!(args.windows(2).any(|w| w == ["-p", *krate]));
        }
        assert_eq!(args[0], "clippy");
        assert!(args.windows(2).any(|w| w == ["--target", WASM_TARGET]));
        assert_eq!(args[args.len() - 3..], ["--", "-D", "warnings"]);
    }

    #[test]
    fn every_scratch_build_is_pruned_before_the_shared_debug_build() {
        let test_step = STEPS.iter().position(|s| s.name == "test").unwrap();
        for scratch in [LINT_SCRATCH, BENCH_SCRATCH, pkg::WASM_SCRATCH] {
            let pruned_by = STEPS.iter().position(|s| s.prune.contains(&scratch));
            assert!(
                matches!(pruned_by, Some(i) if i < test_step),
                "{scratch} is pruned at {pruned_by:?}, the test step is {test_step}"
            );
        }
    }

    #[test]
    fn step_names_are_unique() {
        let mut names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STEPS.len());
    }
}
