//! The benchmark driver (`scripts/bench` runs it): each scenario on a control plane of its own,
//! the release build of the operator against the fake Zoho with 100 ms latency, and the figures
//! as JSON and as a Markdown table.
//!
//! Every scenario also checks the operator's promises (one mint per credential per period, at
//! most three API writes per refresh, nothing minted or written on restart); a broken promise
//! fails the run. Times and memory are reported against their targets, never enforced.

mod harness;
mod report;
mod scenarios;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use crate::{harness::Binaries, report::Report};

#[derive(Parser)]
#[command(about = "Benchmarks zoho-token-operator against a local control plane and the fake Zoho")]
struct Args {
    /// `full` measures everything (about half an hour on 2 cores); `ci` is the small run that
    /// checks the invariants in a minute or two.
    #[arg(long, value_enum, default_value_t = Profile::Full)]
    profile: Profile,
    /// Run only these scenarios (comma-separated): cold-start, baseline, steady-state,
    /// shared-credential, crowded, fan-out, ci.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The connection counts of the cold-start and baseline scenarios.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// How often each size's baseline and cold start run, in pairs; the targets use medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Skip tuning the baseline and write this many connections at once.
    #[arg(long)]
    baseline_concurrency: Option<usize>,
    /// Another flag for the operator, e.g. `--operator-arg=--log-format=json` (repeatable).
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Runs the operator under this command, e.g. `valgrind --tool=massif` or `perf record -g --`,
    /// to profile it (split at spaces).
    #[arg(long)]
    operator_wrapper: Option<String>,
    /// Keep each scenario's logs (operator, fake Zoho, baseline) in a directory under this one.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the figures into this Markdown file, between its result markers.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Where the operator, fake-zoho and bench-baseline binaries are; default: beside this one.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Profile {
    Full,
    Ci,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?.parent().context("the driver lives in a directory")?.to_path_buf(),
    };
    let bins = Binaries {
        operator: bin_dir.join("zoho-token-operator"),
        fake_zoho: bin_dir.join("fake-zoho"),
        baseline: bin_dir.join("bench-baseline"),
    };
    for binary in [&bins.operator, &bins.fake_zoho, &bins.baseline] {
        anyhow::ensure!(
            binary.exists(),
            "{} is missing; build it with `cargo build --release --workspace --bins`",
            binary.display()
        );
    }
    let plan = scenarios::Plan::new(args.profile, &args.only, &args.sizes, args.repeats, args.baseline_concurrency);
    let wrapper =
        args.operator_wrapper.as_deref().map(|w| w.split_whitespace().map(String::from).collect()).unwrap_or_default();
    let env = scenarios::Env {
        bins,
        operator_args: args.operator_args.clone(),
        operator_wrapper: wrapper,
        keep_logs: args.keep_logs.clone(),
    };
    let mut report = Report::new(args.profile == Profile::Ci, report::machine().await);
    let outcome = scenarios::run(&env, &plan, &mut report).await;
    let text = report.markdown();
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    if let Some(path) = &args.markdown {
        report::write_between_markers(path, &text)?;
    }
    outcome?;
    let broken = report.broken_invariants();
    anyhow::ensure!(broken.is_empty(), "broken invariants:\n  {}", broken.join("\n  "));
    Ok(())
}
