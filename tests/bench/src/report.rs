//! The figures, their targets and invariants, as JSON and as Markdown.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, process::Command};

use anyhow::Result;
use serde::Serialize;

use crate::harness::{Proc, Requests};

/// The targets for 5,000 connections on this 2-core machine.
const TARGET_CONNECTIONS: usize = 5000;
const TARGET_ALL_READY_SECONDS: f64 = 60.0;
const TARGET_BASELINE_RATIO: f64 = 1.3;
const TARGET_PEAK_RSS_MB: f64 = 100.0;
/// A promise, checked in every run: a refresh writes the Secret and the status, and no more
/// than one thing beside them.
const MAX_WRITES_PER_REFRESH: f64 = 3.0;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    /// VmHWM: the most memory the process ever held.
    pub peak_rss_mb: f64,
}

impl Usage {
    pub fn of(process: &Proc) -> Self {
        Self { cpu_seconds: round(process.cpu()), peak_rss_mb: round(process.peak_rss() as f64 / 1e6) }
    }
}

fn round(value: f64) -> f64 {
    crate::harness::round3(value)
}

#[derive(Debug, Serialize)]
pub struct ColdStart {
    pub connections: usize,
    pub credentials: usize,
    /// From the operator's start, every object existing before it, until the last is Ready.
    pub all_ready_seconds: f64,
    /// Each connection's time from the operator's start to Ready.
    pub latency_seconds: BTreeMap<String, f64>,
    pub operator: Usage,
    /// CPU seconds of every process during the cold start.
    pub cpu_seconds: BTreeMap<String, f64>,
    pub requests_per_connection: BTreeMap<String, f64>,
    pub requests: Requests,
    pub zoho_requests: u64,
    pub mints: u64,
    pub baseline_seconds: Option<f64>,
    pub baseline_ratio: Option<f64>,
    /// The operator's reconciles during the cold start, from its histogram.
    pub reconciles: Durations,
    /// Its token requests to the fake Zoho, from its histogram.
    pub token_requests: Durations,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Durations {
    pub count: u64,
    pub mean_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Restart {
    pub connections: usize,
    /// From the new process's start until it has reconciled every connection.
    pub all_reconciled_seconds: f64,
    pub zoho_requests: u64,
    pub mints: u64,
    pub writes: u64,
    pub reads_per_connection: f64,
    pub operator: Usage,
    pub cpu_seconds: BTreeMap<String, f64>,
    pub requests: Requests,
}

#[derive(Debug, Serialize)]
pub struct SteadyState {
    pub connections: usize,
    pub token_lifetime_seconds: u64,
    pub period_seconds: u64,
    pub window_seconds: f64,
    /// Connections that got a new token, counted once per new token, shared ones included.
    pub refreshes: u64,
    /// Over all connections: mints after each one's first, per refresh period between its first
    /// and last mint; a gap shorter than a period adds a mint, one of a token's life a period.
    pub mints_per_connection_per_period: f64,
    /// Connections with two consecutive mints closer than a period or as far apart as a token's
    /// life: two mints in one period, or a period without one.
    pub connections_not_one_mint_per_period: usize,
    /// The shortest and longest time between two consecutive mints of any connection.
    pub shortest_gap_seconds: f64,
    pub longest_gap_seconds: f64,
    /// Up to ten of those, with their mints and the time between their first and last.
    pub offenders: Vec<String>,
    pub writes_per_refresh: f64,
    pub reads_per_refresh: f64,
    pub operator_cpu_ms_per_refresh: f64,
    pub cpu_seconds: BTreeMap<String, f64>,
    pub requests: Requests,
    /// Connections seen not Ready during the window.
    pub lapsed: usize,
}

#[derive(Debug, Serialize)]
pub struct SharedCredential {
    pub connections: usize,
    pub cold_start_mints: u64,
    /// Refresh periods between the credential's first and last mint.
    pub periods: u64,
    pub mints_after_the_first: u64,
    /// Whether every two consecutive mints were a period (and less than a token's life) apart.
    pub one_per_period: bool,
}

#[derive(Debug, Serialize)]
pub struct Crowded {
    pub unrelated_secrets: usize,
    pub secret_bytes: usize,
    pub connections: usize,
    pub all_ready_seconds: f64,
    pub operator: Usage,
    pub cpu_seconds: BTreeMap<String, f64>,
    pub requests: Requests,
}

#[derive(Debug, Serialize)]
pub struct FanOut {
    pub namespaces: usize,
    /// From the ClusterZohoConnection's creation until every namespace holds its token.
    pub first_token_seconds: f64,
    /// From the refresh request until every namespace holds the new token.
    pub forced_refresh_seconds: f64,
    pub mints: u64,
    pub operator: Usage,
    /// CPU seconds of every process during the forced refresh.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// The operator's requests during the forced refresh.
    pub requests: Requests,
}

#[derive(Debug, Serialize)]
pub struct Baseline {
    pub connections: usize,
    pub concurrency: usize,
    pub all_ready_seconds: f64,
    pub process: Usage,
    pub cpu_seconds: BTreeMap<String, f64>,
    pub requests: Requests,
}

#[derive(Debug, Serialize)]
pub struct BaselineTrial {
    pub concurrency: usize,
    pub connections: usize,
    pub all_ready_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub kube_apiserver: String,
    pub etcd: String,
    pub rustc: String,
    pub git_commit: String,
    pub date: String,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: &'static str,
    pub machine: Machine,
    pub zoho_latency_ms: u64,
    pub targets: Vec<Target>,
    pub invariants: Vec<Target>,
    pub cold_start: Vec<ColdStart>,
    pub baseline_trials: Vec<BaselineTrial>,
    pub baseline: Vec<Baseline>,
    pub restart: Vec<Restart>,
    pub steady_state: Option<SteadyState>,
    pub shared_credential: Option<SharedCredential>,
    pub crowded: Option<Crowded>,
    pub fan_out: Option<FanOut>,
}

fn run(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

pub async fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_default();
    let binary = |name: &str| {
        testkit::control_plane::find_binary(name).map(|p| p.display().to_string()).unwrap_or_else(|_| name.into())
    };
    // The result files themselves change with every run; anything else makes the tree dirty.
    let dirty = !run("git", &["status", "--porcelain", "--", ".", ":!BENCHMARKS.md", ":!benchmarks.json"]).is_empty();
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: round(memory_kib / 1024.0 / 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        kube_apiserver: run(&binary("kube-apiserver"), &["--version"]),
        etcd: run(&binary("etcd"), &["--version"]),
        rustc: run("rustc", &["--version"]),
        git_commit: run("git", &["rev-parse", "--short=12", "HEAD"]) + if dirty { "-dirty" } else { "" },
        date: jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default(),
    }
}

fn check(name: impl Into<String>, goal: &str, measured: String, met: bool) -> Target {
    Target { name: name.into(), goal: goal.into(), measured, met }
}

impl Report {
    pub fn new(ci: bool, machine: Machine) -> Self {
        Self {
            profile: if ci { "ci" } else { "full" },
            machine,
            zoho_latency_ms: 100,
            targets: vec![],
            invariants: vec![],
            cold_start: vec![],
            baseline_trials: vec![],
            baseline: vec![],
            restart: vec![],
            steady_state: None,
            shared_credential: None,
            crowded: None,
            fan_out: None,
        }
    }

    /// Evaluates targets and invariants.
    pub fn finish(&mut self) {
        self.targets = self.targets();
        self.invariants = self.invariants();
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = vec![];
        let n = TARGET_CONNECTIONS;
        let runs: Vec<&ColdStart> = self.cold_start.iter().filter(|c| c.connections == n).collect();
        if !runs.is_empty() {
            let of = |values: Vec<f64>| format!("median of {}: {}", values.len(), list(&values));
            let seconds: Vec<f64> = runs.iter().map(|c| c.all_ready_seconds).collect();
            let s = median(&seconds);
            let name = format!("{n} connections Ready after a cold start");
            targets.push(check(name, "≤ 60 s", format!("{s:.1} s ({})", of(seconds)), s <= TARGET_ALL_READY_SECONDS));
            let ratios: Vec<f64> = runs.iter().filter_map(|c| c.baseline_ratio).collect();
            if !ratios.is_empty() {
                let r = median(&ratios);
                let name = "Time to all Ready ÷ baseline, each run against the baseline just before it";
                targets.push(check(name, "≤ 1.3", format!("{r:.2} ({})", of(ratios)), r <= TARGET_BASELINE_RATIO));
            }
            let rss = runs.iter().map(|c| c.operator.peak_rss_mb).fold(0.0, f64::max);
            let name = format!("Peak RSS, {n} connections (the highest run)");
            targets.push(check(name, "≤ 100 MB", format!("{rss:.1} MB"), rss <= TARGET_PEAK_RSS_MB));
        }
        if let Some(crowded) = &self.crowded {
            let rss = crowded.operator.peak_rss_mb;
            let name = format!("Peak RSS, {} unrelated Secrets", crowded.unrelated_secrets);
            targets.push(check(name, "≤ 100 MB", format!("{rss:.1} MB"), rss <= TARGET_PEAK_RSS_MB));
        }
        if let Some(steady) = self.steady_state.as_ref().filter(|s| s.connections == n) {
            let w = steady.writes_per_refresh;
            targets.push(check("API writes per refresh", "≤ 3", format!("{w:.2}"), w <= MAX_WRITES_PER_REFRESH));
            let m = steady.mints_per_connection_per_period;
            let off = steady.connections_not_one_mint_per_period;
            let measured = format!("{m:.3} ({off} connections otherwise)");
            targets.push(check("Mints per connection per period", "exactly 1", measured, off == 0));
        }
        if let Some((measured, met)) = self.restarts_of(n) {
            targets.push(check(format!("Restart with {n} Ready"), "0 mints, 0 writes", measured, met));
        }
        targets
    }

    /// What the restarts with `n` connections requested and wrote, and whether that was nothing.
    fn restarts_of(&self, n: usize) -> Option<(String, bool)> {
        let restarts: Vec<&Restart> = self.restart.iter().filter(|r| r.connections == n).collect();
        let (requests, writes) = restarts.iter().fold((0, 0), |(q, w), r| (q + r.zoho_requests, w + r.writes));
        let measured = format!("{requests} Zoho requests, {writes} writes in {}", plural(restarts.len(), "restart"));
        (!restarts.is_empty()).then_some((measured, requests == 0 && writes == 0))
    }

    /// The promises every run checks, whatever the figures.
    fn invariants(&self) -> Vec<Target> {
        let mut checks = vec![];
        let sizes: std::collections::BTreeSet<usize> = self.cold_start.iter().map(|c| c.connections).collect();
        for n in sizes {
            let runs: Vec<&ColdStart> = self.cold_start.iter().filter(|c| c.connections == n).collect();
            let mints: Vec<String> = runs.iter().map(|c| c.mints.to_string()).collect();
            let measured = format!("{} mints for {} credentials", mints.join(", "), runs[0].credentials);
            let met = runs.iter().all(|c| c.mints == c.credentials as u64);
            checks.push(check(
                format!("Cold start, {n} connections: one mint per credential"),
                "= credentials",
                measured,
                met,
            ));
            if let Some((measured, met)) = self.restarts_of(n) {
                checks.push(check(format!("Restart, {n} connections"), "0 Zoho requests, 0 writes", measured, met));
            }
        }
        if let Some(steady) = &self.steady_state {
            let off = steady.connections_not_one_mint_per_period;
            let m = steady.mints_per_connection_per_period;
            let measured = format!(
                "{m:.3}; {off} connections otherwise; consecutive mints {:.1} s to {:.1} s apart",
                steady.shortest_gap_seconds, steady.longest_gap_seconds
            );
            checks.push(check("Steady state: mints per connection per period", "exactly 1", measured, off == 0));
            let w = steady.writes_per_refresh;
            checks.push(check(
                "Steady state: API writes per refresh",
                "≤ 3",
                format!("{w:.2}"),
                w <= MAX_WRITES_PER_REFRESH,
            ));
            checks.push(check(
                "Steady state: connections that lost Ready",
                "0",
                steady.lapsed.to_string(),
                steady.lapsed == 0,
            ));
        }
        if let Some(shared) = &self.shared_credential {
            let name = format!("Shared credential, {} connections: cold-start mints", shared.connections);
            checks.push(check(name, "1", shared.cold_start_mints.to_string(), shared.cold_start_mints == 1));
            if shared.periods > 0 {
                let measured = format!(
                    "{} in {}",
                    plural(shared.mints_after_the_first as usize, "mint"),
                    plural(shared.periods as usize, "period")
                );
                checks.push(check(
                    "Shared credential: mints per period",
                    "1",
                    measured,
                    shared.mints_after_the_first == shared.periods && shared.one_per_period,
                ));
            }
        }
        checks
    }

    pub fn broken_invariants(&self) -> Vec<String> {
        self.invariants
            .iter()
            .filter(|c| !c.met)
            .map(|c| format!("{}: {} (want {})", c.name, c.measured, c.goal))
            .collect()
    }

    pub fn markdown(&mut self) -> String {
        self.finish();
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured on {} at commit `{}` (profile `{}`), on {} ({} cores, {:.1} GiB RAM, Linux {}); {}, {}, {}. \
             Every token request to the fake Zoho takes {} ms.\n",
            m.date,
            m.git_commit,
            self.profile,
            m.cpu_model,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.kube_apiserver,
            m.etcd,
            m.rustc,
            self.zoho_latency_ms
        );
        if !self.targets.is_empty() {
            checks_table(&mut out, "Targets (5,000 connections)", ["Target", "Met"], &self.targets);
        }
        checks_table(&mut out, "Invariants (checked in every run)", ["Check", "Held"], &self.invariants);
        if !self.cold_start.is_empty() {
            out += "### Cold start\n\nEvery connection and its own credentials Secret exist before the operator starts; times run from the operator's start. \
                    CPU is the operator's, and kube-apiserver's plus etcd's, over the same interval.\n\n\
                    | Connections | All Ready (s) | p50 (s) | p95 (s) | p99 (s) | Baseline (s) | ÷ baseline | Operator CPU (s) | API server + etcd CPU (s) | Other load (cores) | Peak RSS (MB) | API requests / connection | API writes / connection | Zoho requests / connection |\n\
                    | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
            for c in &self.cold_start {
                let n = c.connections as f64;
                let lat = |p: &str| c.latency_seconds.get(p).copied().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
                    c.connections,
                    c.all_ready_seconds,
                    lat("p50"),
                    lat("p95"),
                    lat("p99"),
                    c.baseline_seconds.map_or("–".into(), |s| format!("{s:.1}")),
                    c.baseline_ratio.map_or("–".into(), |r| format!("{r:.2}")),
                    c.operator.cpu_seconds,
                    control_plane_cpu(&c.cpu_seconds),
                    other_load(&c.cpu_seconds),
                    c.operator.peak_rss_mb,
                    c.requests.total() as f64 / n,
                    c.requests.writes() as f64 / n,
                    c.zoho_requests as f64 / n,
                );
            }
            if let Some(largest) = self.cold_start.iter().max_by_key(|c| c.connections) {
                let _ = writeln!(
                    out,
                    "\nThe operator's API requests per connection by verb, {} connections:\n",
                    largest.connections
                );
                out += "| Request | Per connection |\n| --- | ---: |\n";
                for (key, per) in &largest.requests_per_connection {
                    let _ = writeln!(out, "| `{key}` | {per:.3} |");
                }
            }
            out += "\n";
        }
        if !self.baseline.is_empty() || !self.baseline_trials.is_empty() {
            out += "### Baseline\n\n`bench-baseline` makes only the writes the operator must make, one server-side apply of each connection's Secret and one of its status, built by the operator's own code.\n\n";
            if !self.baseline_trials.is_empty() {
                out += "| Writes at once | All Ready, 1,000 connections (s) |\n| ---: | ---: |\n";
                for t in &self.baseline_trials {
                    let _ = writeln!(out, "| {} | {:.2} |", t.concurrency, t.all_ready_seconds);
                }
                out += "\n";
            }
            out += "| Connections | Writes at once | All Ready (s) | Its CPU (s) | API server + etcd CPU (s) | Other load (cores) | API writes / connection |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
            for b in &self.baseline {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                    b.connections,
                    b.concurrency,
                    b.all_ready_seconds,
                    b.process.cpu_seconds,
                    control_plane_cpu(&b.cpu_seconds),
                    // The baseline process itself counts here: it is not one of the measured ones.
                    other_load(&b.cpu_seconds),
                    b.requests.writes() as f64 / b.connections as f64
                );
            }
            out += "\n";
        }
        let largest = self.cold_start.iter().map(|c| c.connections).max().unwrap_or_default();
        let colds = self.cold_start.iter().filter(|c| c.connections == largest);
        if let Some((cold, baseline)) = colds.zip(self.baseline.iter().filter(|b| b.connections == largest)).last() {
            let _ = writeln!(
                out,
                "Where the CPU went in the last run with {} connections (seconds; \"rest of the machine\" is everyone else's work):\n\n\
                 | Process | Operator's cold start | Baseline |\n| --- | ---: | ---: |",
                cold.connections
            );
            for (name, seconds) in &cold.cpu_seconds {
                let other = baseline.cpu_seconds.get(name).copied().unwrap_or_default();
                let _ = writeln!(out, "| {name} | {seconds:.1} | {other:.1} |");
            }
            out += "\n";
        }
        if !self.restart.is_empty() {
            out += "### Restart with every connection Ready\n\n| Connections | All reconciled (s) | Zoho requests | API writes | API reads / connection | Operator CPU (s) | Peak RSS (MB) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
            for r in &self.restart {
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {} | {} | {:.2} | {:.1} | {:.1} |",
                    r.connections,
                    r.all_reconciled_seconds,
                    r.zoho_requests,
                    r.writes,
                    r.reads_per_connection,
                    r.operator.cpu_seconds,
                    r.operator.peak_rss_mb
                );
            }
            out += "\n";
        }
        if let Some(s) = &self.steady_state {
            let _ = writeln!(
                out,
                "### Steady state\n\n{} connections, {} s tokens refreshed every {} s, observed for {:.0} s. A connection \
                 counts as otherwise when two of its consecutive mints were less than 90% of a period apart, or a token's life.\n\n\
                 | Refreshes | Mints / connection / period | Connections otherwise | Consecutive mints apart (s) | API writes / refresh | API reads / refresh | Operator CPU / refresh (ms) | API server + etcd CPU (s) | Lost Ready |\n\
                 | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
                 | {} | {:.3} | {} | {:.1} to {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {} |\n",
                s.connections,
                s.token_lifetime_seconds,
                s.period_seconds,
                s.window_seconds,
                s.refreshes,
                s.mints_per_connection_per_period,
                s.connections_not_one_mint_per_period,
                s.shortest_gap_seconds,
                s.longest_gap_seconds,
                s.writes_per_refresh,
                s.reads_per_refresh,
                s.operator_cpu_ms_per_refresh,
                control_plane_cpu(&s.cpu_seconds),
                s.lapsed
            );
        }
        if let Some(s) = &self.shared_credential {
            let _ = writeln!(
                out,
                "### Shared credential\n\n| Connections | Cold-start mints | Periods | Mints in them |\n| ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} |\n",
                s.connections, s.cold_start_mints, s.periods, s.mints_after_the_first
            );
        }
        if let Some(c) = &self.crowded {
            let _ = writeln!(
                out,
                "### Crowded cluster\n\n{} unrelated Secrets of {} bytes in other namespaces.\n\n\
                 | Connections | All Ready (s) | Operator CPU (s) | Peak RSS (MB) | API requests |\n| ---: | ---: | ---: | ---: | ---: |\n| {} | {:.1} | {:.1} | {:.1} | {} |\n",
                c.unrelated_secrets,
                c.secret_bytes,
                c.connections,
                c.all_ready_seconds,
                c.operator.cpu_seconds,
                c.operator.peak_rss_mb,
                c.requests.total()
            );
        }
        if let Some(f) = &self.fan_out {
            let _ = writeln!(
                out,
                "### ClusterZohoConnection fan-out\n\n| Namespaces | First token everywhere (s) | New token everywhere after a forced refresh (s) | Mints | API writes for the refresh |\n| ---: | ---: | ---: | ---: | ---: |\n| {} | {:.1} | {:.1} | {} | {} |\n",
                f.namespaces,
                f.first_token_seconds,
                f.forced_refresh_seconds,
                f.mints,
                f.requests.writes()
            );
        }
        out
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
}

/// How many cores the processes outside the measurement kept busy on average.
fn other_load(cpu: &BTreeMap<String, f64>) -> f64 {
    let wall = cpu.get("wall clock").copied().unwrap_or_default();
    if wall == 0.0 { 0.0 } else { cpu.get("rest of the machine").unwrap_or(&0.0) / wall }
}

fn control_plane_cpu(cpu: &BTreeMap<String, f64>) -> f64 {
    cpu.get("kube-apiserver").unwrap_or(&0.0) + cpu.get("etcd").unwrap_or(&0.0)
}

fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

fn checks_table(out: &mut String, title: &str, [what, met]: [&str; 2], checks: &[Target]) {
    let _ = writeln!(out, "### {title}\n\n| {what} | Goal | Measured | {met} |\n| --- | --- | --- | --- |");
    for c in checks {
        let _ =
            writeln!(out, "| {} | {} | {} | {} |", c.name, c.goal, c.measured, if c.met { "yes" } else { "**no**" });
    }
    out.push('\n');
}

const BEGIN: &str = "<!-- bench:begin (scripts/bench writes everything up to bench:end) -->";
const END: &str = "<!-- bench:end -->";

/// Replaces what lies between the result markers of a Markdown file, keeping the prose around
/// them; a file without markers gets them.
pub fn write_between_markers(path: &Path, text: &str) -> Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n\n{}\n{END}", text.trim_end());
    let updated = match (existing.find(BEGIN), existing.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{block}{}", &existing[..begin], &existing[end + END.len()..])
        }
        _ => format!("# Benchmarks\n\n{block}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
