//! The scenarios. Each starts a control plane and a fake Zoho of its own, so that none inherits
//! another's objects, and measures the operator through /proc, its /metrics, the API server's
//! audit log and the fake's counters.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use k8s_openapi::{ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use zoho_token_operator::api::{ClusterZohoConnection, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ZohoConnection};

use crate::{
    Profile,
    harness::{
        BASELINE_USER, Binaries, Cluster, Fake, OPERATOR_USER, Proc, ReadyWatch, Requests, SYSTEM_NAMESPACE,
        connections_reconciled, create_all, create_namespaces, credentials_secret, own_cpu_seconds, percentiles,
        populate, round3,
    },
    report::{
        Baseline, BaselineTrial, ColdStart, Crowded, FanOut, Report, Restart, SharedCredential, SteadyState, Usage,
    },
};

/// Every token request waits this long at the fake, as a request to Zoho's servers would.
const ZOHO_LATENCY: Duration = Duration::from_millis(100);
/// Tokens that never come due during a measurement.
const LONG_LIFETIME: Duration = Duration::from_secs(3600);
/// Tokens that come due every 40 s (two thirds of their life), for the steady state.
const SHORT_LIFETIME: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(900);

pub struct Env {
    pub bins: Binaries,
    pub operator_args: Vec<String>,
    /// A command to run the operator under, such as a profiler; empty for none.
    pub operator_wrapper: Vec<String>,
    /// Where to keep each scenario's logs; by default they go with its control plane.
    pub keep_logs: Option<std::path::PathBuf>,
}

/// Copies a finished scenario's logs (the operator's, the fake's, the baseline's) to `keep_logs`.
fn keep_logs(env: &Env, cluster: &Cluster, scenario: &str) {
    let Some(dir) = &env.keep_logs else { return };
    let target = dir.join(format!("{scenario}-{}", jiff::Timestamp::now().as_second()));
    let copied = std::fs::create_dir_all(&target).and_then(|()| {
        for entry in std::fs::read_dir(cluster.dir.path())?.flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "log") {
                std::fs::copy(entry.path(), target.join(entry.file_name()))?;
            }
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("   logs in {}", target.display()),
        Err(err) => eprintln!("   could not keep the logs: {err}"),
    }
}

/// What a profile runs.
pub struct Plan {
    cold_sizes: Vec<usize>,
    baseline_sizes: Vec<usize>,
    /// How often each size's baseline and cold start run, one right after the other, so that
    /// both meet the same background load, and medians can be taken.
    repeats: usize,
    baseline_concurrency: Option<usize>,
    steady: Option<(usize, u32)>,
    shared: Option<(usize, u32)>,
    crowded: Option<(usize, usize)>,
    fan_out: Option<usize>,
    ci: bool,
}

impl Plan {
    pub fn new(
        profile: Profile,
        only: &[String],
        sizes: &[usize],
        repeats: usize,
        baseline_concurrency: Option<usize>,
    ) -> Self {
        let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
        let sizes = if sizes.is_empty() { vec![100, 1000, 5000] } else { sizes.to_vec() };
        match profile {
            Profile::Full => Self {
                cold_sizes: if wanted("cold-start") { sizes.clone() } else { vec![] },
                baseline_sizes: if wanted("baseline") { sizes } else { vec![] },
                repeats: repeats.max(1),
                baseline_concurrency,
                steady: wanted("steady-state").then_some((5000, 3)),
                shared: wanted("shared-credential").then_some((1000, 2)),
                crowded: wanted("crowded").then_some((20_000, 100)),
                fan_out: wanted("fan-out").then_some(500),
                ci: false,
            },
            Profile::Ci => Self {
                cold_sizes: vec![],
                baseline_sizes: vec![],
                repeats: 1,
                baseline_concurrency,
                steady: None,
                shared: None,
                crowded: None,
                fan_out: None,
                ci: true,
            },
        }
    }
}

pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    if plan.ci {
        // 50 connections with credentials of their own and 10 sharing one, through a cold
        // start, a restart and one refresh: every invariant, in about a minute.
        let options = Lifecycle { distinct: 50, shared: 10, lifetime: SHORT_LIFETIME, restart: true, periods: 1 };
        let outcome = lifecycle(env, &options).await?;
        report.cold_start.push(outcome.cold);
        report.restart.extend(outcome.restart);
        report.steady_state = outcome.steady;
        report.shared_credential = outcome.shared;
        return Ok(());
    }
    let concurrency = match (plan.baseline_concurrency, plan.baseline_sizes.is_empty()) {
        (Some(concurrency), _) => concurrency,
        (None, true) => 0,
        (None, false) => {
            let trials = tune_baseline(env, 1000, &[8, 16, 32, 64, 128]).await?;
            let best = trials.iter().min_by(|a, b| a.all_ready_seconds.total_cmp(&b.all_ready_seconds));
            let best = best.map_or(32, |trial| trial.concurrency);
            report.baseline_trials = trials;
            best
        }
    };
    let sizes: BTreeSet<usize> = plan.cold_sizes.iter().chain(&plan.baseline_sizes).copied().collect();
    for n in sizes {
        for run in 1..=plan.repeats {
            let baseline_seconds = match plan.baseline_sizes.contains(&n) {
                true => {
                    eprintln!("== baseline, {n} connections, {concurrency} at once (run {run})");
                    let result = baseline(env, n, concurrency).await?;
                    let seconds = result.all_ready_seconds;
                    report.baseline.push(result);
                    Some(seconds)
                }
                false => None,
            };
            if plan.cold_sizes.contains(&n) {
                eprintln!("== cold start and restart, {n} connections (run {run})");
                let options = Lifecycle { distinct: n, shared: 0, lifetime: LONG_LIFETIME, restart: true, periods: 0 };
                let mut outcome = lifecycle(env, &options).await?;
                outcome.cold.baseline_seconds = baseline_seconds;
                outcome.cold.baseline_ratio = baseline_seconds.map(|b| round3(outcome.cold.all_ready_seconds / b));
                report.cold_start.push(outcome.cold);
                report.restart.extend(outcome.restart);
            }
        }
    }
    if let Some((n, periods)) = plan.steady {
        eprintln!("== steady state, {n} connections, {periods} periods");
        let options = Lifecycle { distinct: n, shared: 0, lifetime: SHORT_LIFETIME, restart: false, periods };
        report.steady_state = lifecycle(env, &options).await?.steady;
    }
    if let Some((n, periods)) = plan.shared {
        eprintln!("== shared credential, {n} connections, {periods} periods");
        let options = Lifecycle { distinct: 0, shared: n, lifetime: SHORT_LIFETIME, restart: false, periods };
        report.shared_credential = lifecycle(env, &options).await?.shared;
    }
    if let Some((secrets, n)) = plan.crowded {
        eprintln!("== crowded cluster, {secrets} unrelated Secrets, {n} connections");
        report.crowded = Some(crowded(env, secrets, n).await?);
    }
    if let Some(namespaces) = plan.fan_out {
        eprintln!("== ClusterZohoConnection fan-out to {namespaces} namespaces");
        report.fan_out = Some(fan_out(env, namespaces).await?);
    }
    Ok(())
}

struct Lifecycle {
    /// Connections with a credential each.
    distinct: usize,
    /// Connections that all share one more credential.
    shared: usize,
    lifetime: Duration,
    restart: bool,
    /// Refresh periods observed after the cold start.
    periods: u32,
}

/// How one credential's mints were spaced.
struct Spacing {
    /// Mints after the first.
    gaps: u64,
    /// Refresh periods between its first and last mint, as far as the gaps tell.
    periods: u64,
    min_gap: Duration,
    max_gap: Duration,
    /// Whether every gap lay between a period and a token's life.
    ok: bool,
}

struct LifecycleOutcome {
    cold: ColdStart,
    restart: Option<Restart>,
    steady: Option<SteadyState>,
    shared: Option<SharedCredential>,
}

/// The refresh period of a token of `lifetime`: it is minted anew when a third of its life is left.
fn period_of(lifetime: Duration) -> Duration {
    lifetime * 2 / 3
}

/// Cold start (every object exists before the operator starts), then optionally a restart, then
/// optionally a few refresh periods.
async fn lifecycle(env: &Env, options: &Lifecycle) -> Result<LifecycleOutcome> {
    let cluster = Cluster::start().await?;
    let fake = Fake::start(&env.bins, cluster.dir.path(), options.lifetime, ZOHO_LATENCY).await?;
    let mut tokens = BTreeMap::new();
    let mut creation = Duration::ZERO;
    if options.distinct > 0 {
        let population = populate(&cluster.client, &fake, "bench", options.distinct, false).await?;
        creation += population.creation;
        tokens.extend(population.tokens);
    }
    let shared_token = match options.shared {
        0 => None,
        n => {
            let population = populate(&cluster.client, &fake, "shared", n, true).await?;
            creation += population.creation;
            let token = population.tokens.values().next().cloned();
            tokens.extend(population.tokens);
            token
        }
    };
    let total = tokens.len();
    let credentials: BTreeSet<&String> = tokens.values().collect();
    eprintln!("   created {total} connections in {:.1}s", creation.as_secs_f64());

    let watch = ReadyWatch::start(Api::<ZohoConnection>::all(cluster.client.clone()));
    let before = Snapshot::take(&cluster, &fake, None);
    let mut operator = start_operator(env, &cluster, &fake, cluster.dir.path().join("operator.log"))?;
    watch.wait(total, READY_TIMEOUT, || operator.check_running()).await?;
    let latencies: Vec<f64> =
        watch.ready_at().values().map(|at| at.duration_since(operator.started).as_secs_f64()).collect();
    let all_ready = latencies.iter().copied().fold(0.0, f64::max);
    cluster.audit.settle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let after = Snapshot::take(&cluster, &fake, Some(&operator));
    let stats = fake.stats().await?;
    let requests = cluster.audit.since(before.audit, OPERATOR_USER)?;
    let metrics = operator.metrics().await.unwrap_or_default();
    let shared_cold_mints = shared_token.as_ref().map(|token| stats.refresh_tokens.get(token).map_or(0, |c| c.mints));
    let cold = ColdStart {
        connections: total,
        credentials: credentials.len(),
        all_ready_seconds: round3(all_ready),
        latency_seconds: percentiles(latencies),
        operator: Usage::of(&operator),
        cpu_seconds: after.cpu_since(&before),
        requests_per_connection: per(&requests, total),
        requests,
        zoho_requests: stats.totals.requests,
        mints: stats.totals.mints,
        baseline_seconds: None,
        baseline_ratio: None,
        reconciles: mean_of(&metrics, "zoho_operator_reconcile_duration_seconds"),
        token_requests: mean_of(&metrics, "zoho_operator_token_request_duration_seconds"),
    };
    eprintln!(
        "   all {total} Ready in {:.1}s after the operator started; {} reconciles of {:.3}s on average",
        all_ready, cold.reconciles.count, cold.reconciles.mean_seconds
    );

    let restart = match options.restart {
        false => None,
        true => {
            let (restarted, result) = restart(env, &cluster, &fake, operator, total).await?;
            operator = restarted;
            Some(result)
        }
    };

    let (mut steady, mut shared) = (None, None);
    if options.periods > 0 {
        let period = period_of(options.lifetime);
        let stats_before = fake.stats().await?;
        let lapsed_before = watch.lapsed();
        let before = Snapshot::take(&cluster, &fake, Some(&operator));
        let window = period * options.periods + Duration::from_secs(5);
        eprintln!("   observing {} periods of {}s", options.periods, period.as_secs());
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            operator.check_running()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        cluster.audit.settle(Duration::from_secs(1), Duration::from_secs(10)).await;
        let after = Snapshot::take(&cluster, &fake, Some(&operator));
        let stats = fake.stats().await?;
        let requests = cluster.audit.since(before.audit, OPERATOR_USER)?;
        // A refresh is a connection getting a new token: one mint of a shared credential
        // refreshes every connection that shares it.
        let mints_of = |stats: &testkit::fake_zoho::Stats, token: &String| {
            stats.refresh_tokens.get(token).map_or(0, |counters| counters.mints)
        };
        let refreshes: u64 =
            tokens.values().map(|token| mints_of(&stats, token) - mints_of(&stats_before, token)).sum();
        // Per credential: the mints after the first, against the periods between the first and
        // the last. A double mint adds one without a period; a missed refresh adds a period
        // without a mint.
        // Per credential: each token must be followed by exactly one more, after it came due
        // and before it expired. A gap clearly shorter than a period means two mints in one
        // period; one as long as a token's life means a period without a mint. The operator dates
        // a token from when it sent the request, the fake from when it answered, and requests
        // queue longer at a cold start than later: so "clearly" is a tenth of a period.
        let (shortest, longest) = (period.mul_f64(0.9), options.lifetime);
        let spacing = |token: &str| -> Spacing {
            let counters = stats.refresh_tokens.get(token).copied().unwrap_or_default();
            let ms = |value: Option<u64>| Duration::from_millis(value.unwrap_or_default());
            let (min_gap, max_gap) = (ms(counters.min_gap_ms), ms(counters.max_gap_ms));
            let gaps = counters.mints.saturating_sub(1);
            // Each gap is one period, less a second mint within one, plus a period that went by
            // without a mint (at least one each, where the shortest and longest gap show them).
            let extra = u64::from(gaps > 0 && min_gap < shortest);
            let missed = u64::from(gaps == 0 || max_gap >= longest);
            let periods = (gaps + missed).saturating_sub(extra);
            Spacing { gaps, periods, min_gap, max_gap, ok: extra == 0 && missed == 0 }
        };
        let distinct: Vec<(&String, &String)> =
            tokens.iter().filter(|(_, t)| Some(*t) != shared_token.as_ref()).collect();
        if !distinct.is_empty() {
            let spacings: Vec<(&String, Spacing)> =
                distinct.iter().map(|(key, token)| (*key, spacing(token))).collect();
            // Which connections broke the rule, and how: enough to look them up in the log.
            let offenders: Vec<String> = spacings
                .iter()
                .filter(|(_, spacing)| !spacing.ok)
                .map(|(key, s)| {
                    format!(
                        "{key}: {} gaps, from {:.1} s to {:.1} s",
                        s.gaps,
                        s.min_gap.as_secs_f64(),
                        s.max_gap.as_secs_f64()
                    )
                })
                .take(10)
                .collect();
            let (gaps, periods) = spacings.iter().fold((0, 0), |(g, p), (_, s)| (g + s.gaps, p + s.periods));
            let gap = |pick: fn(&Spacing) -> Duration, fold: fn(f64, f64) -> f64, init: f64| {
                round3(spacings.iter().map(|(_, s)| pick(s).as_secs_f64()).fold(init, fold))
            };
            let elapsed = after.at.duration_since(before.at).as_secs_f64();
            steady = Some(SteadyState {
                connections: distinct.len(),
                token_lifetime_seconds: options.lifetime.as_secs(),
                period_seconds: period.as_secs(),
                window_seconds: round3(elapsed),
                refreshes,
                mints_per_connection_per_period: if periods == 0 { 0.0 } else { round3(gaps as f64 / periods as f64) },
                connections_not_one_mint_per_period: spacings.iter().filter(|(_, s)| !s.ok).count(),
                shortest_gap_seconds: gap(|s| s.min_gap, f64::min, f64::MAX),
                longest_gap_seconds: gap(|s| s.max_gap, f64::max, 0.0),
                offenders,
                writes_per_refresh: ratio(requests.writes(), refreshes),
                reads_per_refresh: ratio(requests.reads(), refreshes),
                operator_cpu_ms_per_refresh: round3(
                    1000.0 * (after.operator_cpu - before.operator_cpu) / refreshes.max(1) as f64,
                ),
                cpu_seconds: after.cpu_since(&before),
                requests,
                lapsed: watch.lapsed() - lapsed_before,
            });
        }
        if let Some(token) = &shared_token {
            let spacing = spacing(token);
            shared = Some(SharedCredential {
                connections: options.shared,
                cold_start_mints: shared_cold_mints.unwrap_or_default(),
                periods: spacing.periods,
                mints_after_the_first: spacing.gaps,
                one_per_period: spacing.ok,
            });
        }
    } else if shared_token.is_some() {
        shared = Some(SharedCredential {
            connections: options.shared,
            cold_start_mints: shared_cold_mints.unwrap_or_default(),
            periods: 0,
            mints_after_the_first: 0,
            one_per_period: true,
        });
    }
    drop(watch);
    operator.terminate().await?;
    fake.stop().await?;
    keep_logs(env, &cluster, &format!("lifecycle-{total}"));
    cluster.stop().await?;
    Ok(LifecycleOutcome { cold, restart, steady, shared })
}

/// The count and mean of a histogram in the operator's metrics.
fn mean_of(metrics: &str, histogram: &str) -> crate::report::Durations {
    let value = |suffix: &str| {
        let series = format!("{histogram}_{suffix} ");
        metrics.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse::<f64>().ok()).unwrap_or_default()
    };
    let (sum, count) = (value("sum"), value("count"));
    crate::report::Durations { count: count as u64, mean_seconds: if count > 0.0 { round3(sum / count) } else { 0.0 } }
}

fn ratio(count: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { round3(count as f64 / of as f64) }
}

fn per(requests: &Requests, n: usize) -> BTreeMap<String, f64> {
    requests.by_verb.iter().map(|(key, count)| (key.clone(), round3(*count as f64 / n as f64))).collect()
}

/// CPU counters at one moment.
struct Snapshot {
    at: Instant,
    audit: crate::harness::Mark,
    operator_cpu: f64,
    fake_cpu: f64,
    control_plane: BTreeMap<String, f64>,
    driver: f64,
    machine: f64,
}

impl Snapshot {
    fn take(cluster: &Cluster, fake: &Fake, operator: Option<&Proc>) -> Self {
        Self {
            at: Instant::now(),
            audit: cluster.audit.mark(),
            operator_cpu: operator.map_or(0.0, Proc::cpu),
            fake_cpu: fake.cpu(),
            control_plane: cluster.control_plane_cpu(),
            driver: own_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    /// CPU seconds per process between two snapshots: the operator, etcd, kube-apiserver,
    /// kube-controller-manager and this driver.
    fn cpu_since(&self, before: &Snapshot) -> BTreeMap<String, f64> {
        let mut cpu: BTreeMap<String, f64> = self
            .control_plane
            .iter()
            .map(|(name, seconds)| (name.clone(), round3(seconds - before.control_plane.get(name).unwrap_or(&0.0))))
            .collect();
        cpu.insert("zoho-token-operator".into(), round3(self.operator_cpu - before.operator_cpu));
        cpu.insert("bench driver".into(), round3(self.driver - before.driver));
        cpu.insert("fake-zoho".into(), round3(self.fake_cpu - before.fake_cpu));
        // Whatever else ran: other people's work on a shared machine, which the figures beside it
        // should be read against.
        let known: f64 = cpu.values().sum();
        cpu.insert("rest of the machine".into(), round3((self.machine - before.machine - known).max(0.0)));
        cpu.insert("wall clock".into(), round3(self.at.duration_since(before.at).as_secs_f64()));
        cpu
    }
}

/// Starts the operator with the bench's identity and flags, under the wrapper if there is one.
fn start_operator(env: &Env, cluster: &Cluster, fake: &Fake, log: std::path::PathBuf) -> Result<Proc> {
    crate::harness::start_operator(&env.bins, cluster, fake, log, &env.operator_args, &env.operator_wrapper)
}

/// CPU seconds the whole machine has been busy since boot, all cores together.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user, nice, system, (idle, iowait), irq, softirq, steal
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| ticks.get(*i)).sum();
    // SAFETY: sysconf has no preconditions.
    busy / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Restarts the operator with every connection Ready, and counts what the new process sends to
/// Zoho and writes to the API server until it has reconciled every connection.
async fn restart(env: &Env, cluster: &Cluster, fake: &Fake, operator: Proc, total: usize) -> Result<(Proc, Restart)> {
    // Not reset: the refresh tokens' first mints stay, for the steady state's spacing.
    let stats_before = fake.stats().await?;
    let before = Snapshot::take(cluster, fake, None);
    operator.terminate().await?;
    let mut operator = start_operator(env, cluster, fake, cluster.dir.path().join("operator-restarted.log"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let reconciled = loop {
        operator.check_running()?;
        ensure!(Instant::now() < deadline, "the restarted operator did not reconcile {total} connections in time");
        let seen = operator.metrics().await.map(|text| connections_reconciled(&text)).unwrap_or(0);
        if seen >= total {
            break operator.started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.audit.settle(Duration::from_secs(3), Duration::from_secs(60)).await;
    let after = Snapshot::take(cluster, fake, Some(&operator));
    let stats = fake.stats().await?;
    let requests = cluster.audit.since(before.audit, OPERATOR_USER)?;
    eprintln!("   restarted: every connection reconciled in {:.1}s", reconciled.as_secs_f64());
    let result = Restart {
        connections: total,
        all_reconciled_seconds: round3(reconciled.as_secs_f64()),
        zoho_requests: stats.totals.requests - stats_before.totals.requests,
        mints: stats.totals.mints - stats_before.totals.mints,
        writes: requests.writes(),
        reads_per_connection: round3(requests.reads() as f64 / total as f64),
        operator: Usage::of(&operator),
        cpu_seconds: after.cpu_since(&before),
        requests,
    };
    Ok((operator, result))
}

/// The baseline's time for `n` connections, measured as the operator's is: from the process
/// start until every connection shows Ready.
async fn baseline(env: &Env, n: usize, concurrency: usize) -> Result<Baseline> {
    let cluster = Cluster::start().await?;
    let fake = Fake::start(&env.bins, cluster.dir.path(), LONG_LIFETIME, ZOHO_LATENCY).await?;
    populate(&cluster.client, &fake, "bench", n, false).await?;
    let watch = ReadyWatch::start(Api::<ZohoConnection>::all(cluster.client.clone()));
    let before = Snapshot::take(&cluster, &fake, None);
    let (seconds, own) = run_baseline(env, &cluster, None, concurrency, &watch, n).await?;
    cluster.audit.settle(Duration::from_secs(1), Duration::from_secs(30)).await;
    let after = Snapshot::take(&cluster, &fake, None);
    let mut cpu_seconds = after.cpu_since(&before);
    // The baseline has exited by now; it reported its own CPU, which is no one else's load.
    cpu_seconds.insert("bench-baseline".into(), own.cpu_seconds);
    if let Some(rest) = cpu_seconds.get_mut("rest of the machine") {
        *rest = round3((*rest - own.cpu_seconds).max(0.0));
    }
    let requests = cluster.audit.since(before.audit, BASELINE_USER)?;
    drop(watch);
    fake.stop().await?;
    cluster.stop().await?;
    eprintln!("   baseline: {n} Ready in {seconds:.1}s");
    Ok(Baseline {
        connections: n,
        concurrency,
        all_ready_seconds: round3(seconds),
        process: own,
        cpu_seconds,
        requests,
    })
}

/// Runs the baseline binary until it exits and every connection it wrote is Ready; returns the
/// seconds from its start until then, and what it reports about itself.
async fn run_baseline(
    env: &Env,
    cluster: &Cluster,
    namespace: Option<&str>,
    concurrency: usize,
    watch: &ReadyWatch,
    expect_ready: usize,
) -> Result<(f64, Usage)> {
    let mut command = Command::new(&env.bins.baseline);
    command.args(["--concurrency", &concurrency.to_string()]).env("KUBECONFIG", cluster.kubeconfig(BASELINE_USER));
    if let Some(namespace) = namespace {
        command.args(["--namespace", namespace]);
    }
    let log = cluster.dir.path().join(format!("baseline-{concurrency}.log"));
    let mut process = Proc::spawn(command, log.clone(), None)?;
    let started = process.started;
    watch.wait(expect_ready, READY_TIMEOUT, || Ok(())).await?;
    let seconds = watch.ready_at().values().map(|at| at.duration_since(started).as_secs_f64()).fold(0.0, f64::max);
    let line = loop {
        if let Some(line) = std::fs::read_to_string(&log)?.lines().find(|l| l.starts_with('{')) {
            break line.to_string();
        }
        if let Err(err) = process.check_running() {
            anyhow::bail!("the baseline failed: {err:#}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let own: serde_json::Value = serde_json::from_str(&line)?;
    let usage = Usage {
        cpu_seconds: round3(own["cpu_seconds"].as_f64().unwrap_or_default()),
        peak_rss_mb: round3(own["peak_rss_bytes"].as_f64().unwrap_or_default() / 1e6),
    };
    Ok((seconds, usage))
}

/// The baseline at several concurrencies, on one cluster, a fresh namespace each.
async fn tune_baseline(env: &Env, n: usize, candidates: &[usize]) -> Result<Vec<BaselineTrial>> {
    eprintln!("== tuning the baseline's concurrency with {n} connections");
    let cluster = Cluster::start().await?;
    let fake = Fake::start(&env.bins, cluster.dir.path(), LONG_LIFETIME, ZOHO_LATENCY).await?;
    let mut trials = Vec::new();
    for &concurrency in candidates {
        let prefix = format!("tune{concurrency}");
        populate(&cluster.client, &fake, &prefix, n, false).await?;
        let namespace = crate::harness::layout(&prefix, 0).0;
        let watch = ReadyWatch::start(Api::<ZohoConnection>::namespaced(cluster.client.clone(), &namespace));
        let (seconds, _) = run_baseline(env, &cluster, Some(&namespace), concurrency, &watch, n).await?;
        eprintln!("   {concurrency} at once: {seconds:.2}s");
        trials.push(BaselineTrial { concurrency, connections: n, all_ready_seconds: round3(seconds) });
    }
    fake.stop().await?;
    cluster.stop().await?;
    Ok(trials)
}

/// 100 connections among many unrelated 2 KiB Secrets: the operator's memory and start-up time.
async fn crowded(env: &Env, secrets: usize, n: usize) -> Result<Crowded> {
    const PER_NAMESPACE: usize = 1000;
    const SECRET_BYTES: usize = 2048;
    let cluster = Cluster::start().await?;
    let fake = Fake::start(&env.bins, cluster.dir.path(), LONG_LIFETIME, ZOHO_LATENCY).await?;
    let namespaces: Vec<String> = (0..secrets.div_ceil(PER_NAMESPACE)).map(|i| format!("crowd-{i}")).collect();
    create_namespaces(&cluster.client, &namespaces, &BTreeMap::new()).await?;
    let started = Instant::now();
    let unrelated: Vec<Secret> = (0..secrets)
        .map(|i| Secret {
            metadata: ObjectMeta {
                name: Some(format!("unrelated-{i}")),
                namespace: Some(namespaces[i / PER_NAMESPACE].clone()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "blob".to_string(),
                ByteString((0..SECRET_BYTES).map(|_| rand::random::<u8>()).collect()),
            )])),
            ..Secret::default()
        })
        .collect();
    create_all(&cluster.client, unrelated).await?;
    eprintln!("   created {secrets} unrelated Secrets in {:.1}s", started.elapsed().as_secs_f64());
    populate(&cluster.client, &fake, "bench", n, false).await?;
    let watch = ReadyWatch::start(Api::<ZohoConnection>::all(cluster.client.clone()));
    let before = Snapshot::take(&cluster, &fake, None);
    let mut operator = start_operator(env, &cluster, &fake, cluster.dir.path().join("operator.log"))?;
    watch.wait(n, READY_TIMEOUT, || operator.check_running()).await?;
    let all_ready =
        watch.ready_at().values().map(|at| at.duration_since(operator.started).as_secs_f64()).fold(0.0, f64::max);
    cluster.audit.settle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let after = Snapshot::take(&cluster, &fake, Some(&operator));
    let requests = cluster.audit.since(before.audit, OPERATOR_USER)?;
    eprintln!("   all {n} Ready in {all_ready:.1}s; peak RSS {:.1} MB", operator.peak_rss() as f64 / 1e6);
    let result = Crowded {
        unrelated_secrets: secrets,
        secret_bytes: SECRET_BYTES,
        connections: n,
        all_ready_seconds: round3(all_ready),
        operator: Usage::of(&operator),
        cpu_seconds: after.cpu_since(&before),
        requests,
    };
    drop(watch);
    operator.terminate().await?;
    fake.stop().await?;
    cluster.stop().await?;
    Ok(result)
}

/// Tokens in every namespace's copy of the ClusterZohoConnection's Secret, by namespace.
struct TokenWatch {
    tokens: std::sync::Arc<std::sync::Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenWatch {
    fn start(client: kube::Client, name: &str) -> Self {
        let tokens = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
        let writer = tokens.clone();
        let config = watcher::Config::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
            .fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(Api::<Secret>::all(client), config).default_backoff().applied_objects());
            while let Some(Ok(secret)) = events.next().await {
                let token = secret.data.as_ref().and_then(|d| d.get("access_token")).map(|v| v.0.clone());
                if let (Some(namespace), Some(token)) = (secret.metadata.namespace, token) {
                    writer.lock().expect("never poisoned").insert(namespace, String::from_utf8_lossy(&token).into());
                }
            }
        });
        Self { tokens, task }
    }

    /// Waits until `n` namespaces hold a token other than `old`, all the same; returns it.
    async fn wait(&self, n: usize, old: Option<&str>, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let tokens = self.tokens.lock().expect("never poisoned");
                let fresh: BTreeSet<&String> = tokens.values().filter(|t| Some(t.as_str()) != old).collect();
                let fresh_count = tokens.values().filter(|t| Some(t.as_str()) != old).count();
                if fresh_count >= n && fresh.len() == 1 {
                    return Ok(fresh.into_iter().next().expect("one").clone());
                }
                ensure!(Instant::now() < deadline, "only {fresh_count} of {n} namespaces hold the new token");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TokenWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One ClusterZohoConnection selecting `count` namespaces: how long until all hold its first
/// token, and until all hold a new one after a forced refresh.
async fn fan_out(env: &Env, count: usize) -> Result<FanOut> {
    let cluster = Cluster::start().await?;
    let fake = Fake::start(&env.bins, cluster.dir.path(), LONG_LIFETIME, ZOHO_LATENCY).await?;
    let token = "1000.fanout".to_string();
    fake.register_refresh_tokens(std::slice::from_ref(&token)).await?;
    create_all(&cluster.client, vec![credentials_secret(SYSTEM_NAMESPACE, "fanout-oauth", &token)]).await?;
    let namespaces: Vec<String> = (0..count).map(|i| format!("fan-{i}")).collect();
    let labels = BTreeMap::from([("bench/fan-out".to_string(), "true".to_string())]);
    create_namespaces(&cluster.client, &namespaces, &labels).await?;
    let mut operator = start_operator(env, &cluster, &fake, cluster.dir.path().join("operator.log"))?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    let tokens = TokenWatch::start(cluster.client.clone(), "fanout-token");
    let api: Api<ClusterZohoConnection> = Api::all(cluster.client.clone());
    let connection: ClusterZohoConnection = serde_json::from_value(json!({
        "apiVersion": "zoho-operator.dev/v1alpha1",
        "kind": "ClusterZohoConnection",
        "metadata": {"name": "fanout"},
        "spec": {
            "accountsUrl": fake.url,
            "credentials": {"secretRef": {"name": "fanout-oauth"}},
            "target": {"secretName": "fanout-token", "namespaceSelector": {"matchLabels": {"bench/fan-out": "true"}}},
        },
    }))?;
    let created = Instant::now();
    api.create(&PostParams::default(), &connection).await?;
    let first = tokens.wait(count, None, READY_TIMEOUT).await?;
    let initial = created.elapsed();
    eprintln!("   {count} namespaces hold the first token {:.1}s after the creation", initial.as_secs_f64());
    cluster.audit.settle(Duration::from_secs(2), Duration::from_secs(60)).await;

    let before = Snapshot::take(&cluster, &fake, Some(&operator));
    let requested = Instant::now();
    let patch = json!({"metadata": {"annotations": {"zoho-operator.dev/refresh-requested-at": jiff::Timestamp::now().to_string()}}});
    api.patch("fanout", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tokens.wait(count, Some(&first), READY_TIMEOUT).await.context("the forced refresh reaches every namespace")?;
    let forced = requested.elapsed();
    operator.check_running()?;
    cluster.audit.settle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let after = Snapshot::take(&cluster, &fake, Some(&operator));
    let requests = cluster.audit.since(before.audit, OPERATOR_USER)?;
    let stats = fake.stats().await?;
    eprintln!("   forced refresh in every namespace after {:.1}s", forced.as_secs_f64());
    let result = FanOut {
        namespaces: count,
        first_token_seconds: round3(initial.as_secs_f64()),
        forced_refresh_seconds: round3(forced.as_secs_f64()),
        mints: stats.totals.mints,
        operator: Usage::of(&operator),
        cpu_seconds: after.cpu_since(&before),
        requests,
    };
    drop(tokens);
    operator.terminate().await?;
    fake.stop().await?;
    cluster.stop().await?;
    Ok(result)
}
