//! agent-mesh's build orchestration: `cargo xtask <command>`.
//!
//! The project's test command, its CI entry point (`.ci/run` runs
//! `cargo xtask test`) and the installers for everything the build needs
//! live here, in Rust, so they behave the same on every machine and need no
//! shell beyond cargo. Deliberately std-only and argument-parsed by hand:
//! xtask is compiled before anything else runs, so it must compile in
//! seconds.

mod disk;
mod fuzz;
mod live;
mod pkg;
mod report;
mod run;
mod setup;
mod shell;
mod testsuite;
mod web;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask — build orchestration for agent-mesh

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    run [--listen ADDR]  The main job: installs what the build needs, builds the
                         PWA (web/) and the release binaries, starts mesh-relay
                         (relay + registry + PWA; SQLite in .mesh-run/) on ADDR
                         (default 127.0.0.1:8080) and a demo agent \"Echo bot\"
                         (echo, echo.stream), and prints the URL to open.
                         Ctrl-C stops everything.

    test                 The project's test command (what CI runs, via .ci/run).
                         Installs the wasm32 target, rustfmt and clippy if
                         missing, then runs, stopping at the first failure:
                           cargo fmt --all -- --check
                           cargo clippy --workspace --all-targets (native, -D warnings)
                           cargo clippy for wasm32-unknown-unknown (wasm crates)
                           cargo bench --no-run (benches must compile)
                           install wasm-bindgen-cli, chromium, pkg/ npm packages,
                             the MCP Python SDK (venv in target/py)
                           cargo xtask pkg (the npm package, with its size)
                           cargo xtask web (the PWA, with its first-load size)
                           cargo test --workspace (unit, integration, doc tests)
                           start a relay on 127.0.0.1:0 and `meshctl serve --echo`
                           wasm-bindgen tests in headless Chrome (wasm-tests/)
                           the npm package's tests in Node, Chromium, Deno and workerd
                           `meshctl mcp` / `gateway` with the MCP Python SDK, httpx, curl
                           the PWA end to end in two headless Chromium profiles
                         Prints each step's time and target/'s size after it, a
                         summary table, and closes with `N passed, M failed`;
                         exits non-zero on failure.

    pkg                  Builds the npm package's generated files into pkg/dist:
                         mesh-wasm for wasm32 (profile wasm-release), then
                         wasm-bindgen --target web, then wasm-opt -Oz (npm
                         binaryen); prints the .wasm's raw and gzipped size.

    web                  Builds the PWA into web/dist (as `pkg`, plus index.html,
                         style.css and web/static/) and prints the first-load
                         size (HTML + JS + wasm + CSS, gzipped).

    fuzz [--runs N] [TARGET...]
                         Runs mesh-core's cargo-fuzz targets (all, or the named
                         ones) with `cargo +nightly fuzz run <t> -- -runs=N`
                         (default N = 1_000_000) and reports executions and
                         exec/s per target. Installs cargo-fuzz if missing.
                         Not part of `test`.

    setup [--all]        Installs prerequisites, each only if missing or at the
                         wrong version. Without --all: what `test` needs (the
                         wasm32 target, rustfmt, clippy). With --all, also
                         wasm-bindgen-cli at the Cargo.lock version, Debian
                         chromium + chromium-driver, npm dependencies, the
                         Python suites' packages (target/py), a nightly
                         toolchain and cargo-fuzz.

    help, --help, -h     Prints this help.

ENVIRONMENT:
    CI=true              Turns cargo's colour off (unless CARGO_TERM_COLOR is set)
                         and its incremental caches (unless CARGO_INCREMENTAL is
                         set): a one-off build gains nothing from them, and they
                         double the disk a debug build takes. `test` also builds
                         the lints, the bench compile and the wasm-release builds
                         into target/ci-<name> and removes each when its step is
                         done, so a small CI disk holds one of them at a time.
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Cli {
    Help,
    Test,
    Fuzz { runs: u64, targets: Vec<String> },
    Setup { all: bool },
    Pkg,
    Web,
    Run { listen: String },
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => return Err("no command given".to_string()),
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Cli::Help);
    }
    let unexpected = |arg: &str| Err(format!("unexpected argument `{arg}` for `{command}`"));
    match command {
        "help" | "--help" | "-h" => Ok(Cli::Help),
        "test" => match rest.first() {
            Some(arg) => unexpected(arg),
            None => Ok(Cli::Test),
        },
        "pkg" => match rest.first() {
            Some(arg) => unexpected(arg),
            None => Ok(Cli::Pkg),
        },
        "web" => match rest.first() {
            Some(arg) => unexpected(arg),
            None => Ok(Cli::Web),
        },
        "run" => match rest {
            [] => Ok(Cli::Run {
                listen: run::DEFAULT_LISTEN.to_string(),
            }),
            [flag, addr] if flag == "--listen" => Ok(Cli::Run {
                listen: addr.clone(),
            }),
            [arg] if arg.starts_with("--listen=") => Ok(Cli::Run {
                listen: arg["--listen=".len()..].to_string(),
            }),
            [arg, ..] => unexpected(arg),
        },
        "setup" => match rest {
            [] => Ok(Cli::Setup { all: false }),
            [all] if all == "--all" => Ok(Cli::Setup { all: true }),
            _ => unexpected(rest.iter().find(|a| *a != "--all").unwrap_or(&rest[0])),
        },
        "fuzz" => {
            let mut runs = fuzz::DEFAULT_RUNS;
            let mut targets = Vec::new();
            let mut iter = rest.iter();
            while let Some(arg) = iter.next() {
                let value = if arg == "--runs" {
                    Some(iter.next().ok_or("`--runs` needs a number")?.as_str())
                } else {
                    arg.strip_prefix("--runs=")
                };
                match value {
                    Some(n) => {
                        runs = n
                            .replace('_', "")
                            .parse()
                            .map_err(|_| format!("`--runs` needs a number, got `{n}`"))?
                    }
                    None if arg.starts_with('-') => return unexpected(arg),
                    None => targets.push(arg.clone()),
                }
            }
            Ok(Cli::Fuzz { runs, targets })
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("error: {message}; see `cargo xtask --help`");
            return ExitCode::from(2);
        }
    };
    let result = match cli {
        Cli::Help => {
            print!("{HELP}");
            Ok(())
        }
        Cli::Test => {
            return if testsuite::test() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Cli::Fuzz { runs, targets } => fuzz::fuzz(runs, &targets),
        Cli::Setup { all } => setup::setup(all),
        Cli::Pkg => pkg::build(),
        Cli::Web => web::build().map(drop),
        Cli::Run { listen } => run::run_demo(&listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse(&args("test")), Ok(Cli::Test));
        assert_eq!(parse(&args("setup")), Ok(Cli::Setup { all: false }));
        assert_eq!(parse(&args("setup --all")), Ok(Cli::Setup { all: true }));
        assert_eq!(parse(&args("pkg")), Ok(Cli::Pkg));
        assert_eq!(parse(&args("web")), Ok(Cli::Web));
        assert_eq!(
            parse(&args("run")),
            Ok(Cli::Run {
                listen: "127.0.0.1:8080".into()
            })
        );
        assert_eq!(
            parse(&args("run --listen 0.0.0.0:9000")),
            Ok(Cli::Run {
                listen: "0.0.0.0:9000".into()
            })
        );
        assert_eq!(parse(&args("--help")), Ok(Cli::Help));
        assert_eq!(parse(&args("test --help")), Ok(Cli::Help));
        assert_eq!(
            parse(&args("fuzz")),
            Ok(Cli::Fuzz {
                runs: fuzz::DEFAULT_RUNS,
                targets: vec![]
            })
        );
        assert_eq!(
            parse(&args("fuzz --runs 1_000 frame_decode --runs=5 handshake")),
            Ok(Cli::Fuzz {
                runs: 5,
                targets: args("frame_decode handshake")
            })
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        assert!(parse(&[]).is_err());
        assert!(parse(&args("tset")).is_err());
        assert!(parse(&args("test --quick")).is_err());
        assert!(parse(&args("setup --all --yes")).is_err());
        assert!(parse(&args("fuzz --runs")).is_err());
        assert!(parse(&args("fuzz --runs many")).is_err());
        assert!(parse(&args("fuzz --jobs 2")).is_err());
    }
}
