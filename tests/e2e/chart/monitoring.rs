//! The chart's alerts and dashboard: promtool checks and unit-tests the rules, the templates ship
//! the files unchanged but for what values set, and every metric they query is one the operator
//! really exports.
//!
//! promtool comes from Debian's `prometheus` package (2.42), which `.ci/run` installs with apt in
//! seconds. Its Go module (github.com/prometheus/prometheus, v0.316.0 for Prometheus 3) requires
//! 251 modules, the cloud SDKs of its service discovery among them, which would be downloaded and
//! compiled on the 2-core machine. The rules use only PromQL that Prometheus 2 and 3 share.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use testkit::fake_zoho::FakeZohoConfig;

use super::*;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/zoho-token-operator/files/prometheus-rules.yaml");
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/chart/prometheus-rules.test.yaml");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/zoho-token-operator/files/grafana-dashboard.json");

fn rules() -> Value {
    serde_saphyr::from_str(&read(RULES)).expect("files/prometheus-rules.yaml parses")
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"].as_array().expect("groups").iter().flat_map(|g| g["rules"].as_array().expect("rules")).collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("files/grafana-dashboard.json parses")
}

fn promtool(args: &[&str]) -> Output {
    let promtool = executable_on_path("promtool", "Debian's prometheus package");
    Command::new(&promtool).args(args).output().unwrap_or_else(|e| panic!("run {}: {e}", promtool.display()))
}

#[test]
fn alerts_pass_promtool_check_and_unit_tests() {
    let check = promtool(&["check", "rules", RULES]);
    assert!(check.status.success(), "promtool check rules:\n{}", output_text(&check));
    let test = promtool(&["test", "rules", RULE_TESTS]);
    let text = output_text(&test);
    assert!(test.status.success() && text.contains("SUCCESS"), "promtool test rules:\n{text}");
    eprintln!("{}", text.trim());

    // Every alert has a case where it fires and one where it must not.
    let tests: Value = serde_saphyr::from_str(&read(RULE_TESTS)).expect("the rule tests parse");
    let mut cases: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for case in tests["tests"].as_array().expect("tests").iter().flat_map(|t| t["alert_rule_test"].as_array()).flatten()
    {
        let seen = cases.entry(case["alertname"].as_str().expect("alertname")).or_default();
        match case["exp_alerts"].as_array().map(Vec::len) {
            Some(0) => seen.1 = true,
            Some(_) => seen.0 = true,
            None => panic!("a case without exp_alerts: {case}"),
        }
    }
    let rules = rules();
    let alerts = alerts(&rules);
    assert_eq!(alerts.len(), 5, "the alerts in {RULES}");
    for alert in alerts {
        let name = alert["alert"].as_str().expect("an alert name");
        assert_eq!(cases.get(name), Some(&(true, true)), "{name} needs a firing and a silent case in {RULE_TESTS}");
        assert!(alert["labels"]["severity"].is_string(), "{name} has no severity label");
        for key in ["summary", "description", "runbook_url"] {
            assert!(alert["annotations"][key].is_string(), "{name} has no {key} annotation");
        }
        assert!(alert["annotations"]["runbook_url"].as_str().is_some_and(|u| u.ends_with("#troubleshooting")));
    }
    let readme = read(&format!("{CHART}/README.md"));
    assert!(readme.contains("\n## Troubleshooting\n"), "the runbook links point at a missing README section");
}

#[test]
fn prometheus_rule_ships_the_rules_file() {
    let scratch = Scratch::new("rules");
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("PrometheusRule").is_empty(), "rules are opt-in");

    let rendered = render(&scratch, "zoho", "ops", &json!({"prometheus": {"rules": {"enabled": true}}}));
    let rule = rendered.get("PrometheusRule", "zoho-zoho-token-operator");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    assert_eq!(rule["spec"]["groups"], rules()["groups"], "the PrometheusRule is not files/prometheus-rules.yaml");

    let values = json!({"prometheus": {"rules": {
        "enabled": true,
        "labels": {"release": "kube-prometheus-stack"},
        "annotations": {"example.test/owner": "integrations"},
        "additionalRuleLabels": {"team": "integrations", "severity": "page-everyone"},
        "runbookUrl": "https://docs.example.test/zoho#troubleshooting",
    }}});
    let rendered = render(&scratch, "zoho", "ops", &values);
    let rule = rendered.get("PrometheusRule", "zoho-zoho-token-operator");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(rule["metadata"]["labels"]["app.kubernetes.io/instance"], "zoho");
    assert_eq!(rule["metadata"]["annotations"], json!({"example.test/owner": "integrations"}));
    let mut expected = rules();
    for alert in expected["groups"]
        .as_array_mut()
        .expect("groups")
        .iter_mut()
        .flat_map(|g| g["rules"].as_array_mut().expect("rules").iter_mut())
    {
        // The alert's own severity wins over additionalRuleLabels.
        alert["labels"]["team"] = json!("integrations");
        alert["annotations"]["runbook_url"] = json!("https://docs.example.test/zoho#troubleshooting");
    }
    assert_eq!(rule["spec"]["groups"], expected["groups"]);
}

#[test]
fn grafana_dashboard_ships_the_dashboard_file() {
    let scratch = Scratch::new("dashboard");
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("ConfigMap").is_empty(), "the dashboard is opt-in");

    let rendered = render(&scratch, "zoho", "ops", &json!({"grafana": {"dashboard": {"enabled": true}}}));
    let config_map = rendered.get("ConfigMap", "zoho-zoho-token-operator-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], "ops");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1", "the sidecar's default label");
    let data = config_map["data"].as_object().expect("data");
    assert_eq!(data.len(), 1);
    let shipped: Value = serde_json::from_str(data["zoho-token-operator.json"].as_str().expect("a string"))
        .expect("the ConfigMap holds JSON");
    assert_eq!(shipped, dashboard(), "the ConfigMap is not files/grafana-dashboard.json");

    let values = json!({"grafana": {"dashboard": {
        "enabled": true, "labels": {"dashboards": "zoho"}, "annotations": {"grafana_folder": "Zoho"}, "namespace": "monitoring",
    }}});
    let rendered = render(&scratch, "zoho", "ops", &values);
    let config_map = rendered.get_in("ConfigMap", "zoho-zoho-token-operator-dashboard", "monitoring");
    assert_eq!(config_map["metadata"]["labels"]["dashboards"], "zoho");
    // Helm merges maps with the defaults: the sidecar's label stays unless set to null.
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(config_map["metadata"]["annotations"], json!({"grafana_folder": "Zoho"}));

    let values = json!({"grafana": {"dashboard": {"enabled": true, "labels": {"grafana_dashboard": null, "dashboards": "zoho"}}}});
    let rendered = render(&scratch, "zoho", "ops", &values);
    let labels = &rendered.get("ConfigMap", "zoho-zoho-token-operator-dashboard")["metadata"]["labels"];
    assert!(labels.get("grafana_dashboard").is_none(), "grafana_dashboard: null keeps the label: {labels}");

    // The panels the operator's users look for, each with at least one query.
    let dashboard = dashboard();
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for title in [
        "Connections Ready",
        "Time to token expiry",
        "Token requests by outcome",
        "Token request duration",
        "Deferred mints",
        "Reconciles",
        "Reconcile duration",
        "Leader",
    ] {
        assert!(titles.contains(title), "no panel {title:?} among {titles:?}");
    }
    for panel in panels {
        assert!(!queries_of(panel).is_empty(), "panel {} has no query", panel["title"]);
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} ignores the data source variable",
            panel["title"]
        );
    }
}

/// Every metric the alerts and the dashboard query exists in the operator's /metrics once it has
/// minted a token and failed a reconcile: a renamed metric breaks this test, not the alerts.
#[tokio::test]
async fn every_metric_in_the_alerts_and_dashboard_is_exported() {
    let world = World::shared("chart-metrics", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    world.create_connection("broken", json!({"credentials": {"secretRef": {"name": "missing"}}})).await;
    world.live_token("crm").await;
    wait_ready(&world.connections, "broken", "False", "CredentialsSecretNotFound", SETTLE).await;

    let mut queried = BTreeSet::new();
    for alert in alerts(&rules()) {
        queried.extend(metric_names(alert["expr"].as_str().expect("an expr")));
    }
    for query in dashboard()["panels"].as_array().expect("panels").iter().flat_map(queries_of) {
        queried.extend(metric_names(&query));
    }
    // `up` comes from Prometheus's scrape, not from the operator.
    queried.remove("up");
    assert!(queried.len() >= 10, "too few metrics found in the queries: {queried:?}");

    let scrape = eventually(SETTLE, "the reconcile failure in /metrics", || async {
        let text = operator.metrics();
        text.contains("zoho_operator_reconcile_failures_total{").then_some(text)
    })
    .await;
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = queried.iter().filter(|name| !exported.contains(name.as_str())).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\nexported: {exported:?}");
    world.namespace.delete().await.expect("delete the namespace");
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |expr| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum without (outcome) (increase(a_total{outcome=~"x|y", b="{c}"}[15m] offset 5m)) >= 3 and on (pod) b"#
        ),
        ["a_total", "b"]
    );
    assert_eq!(names("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))"), ["h_bucket"]);
    assert_eq!(
        names("e - time() < 600 or absent(build_info) unless count(r == bool 0) > 1e3"),
        ["build_info", "e", "r"]
    );
}

/// The PromQL queries of a dashboard panel.
fn queries_of(panel: &Value) -> Vec<String> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

/// The metric names a PromQL expression selects: its identifiers, less functions (followed by a
/// parenthesis), keywords and aggregations, label lists of `by`, `without`, `on`, `ignoring`, `group_left` and
/// `group_right`, label matchers, strings, durations, numbers and Grafana's `$variables`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations are keywords too: `sum without (l) (x)` puts no parenthesis after `sum`.
    const KEYWORDS: [&str; 19] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Index just past the character that closes what starts at `from`, skipping strings.
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from + 1;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' {
                j += 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_to(i, '"');
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$' | '.')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().position(|c| !c.is_whitespace()).map(|n| i + n);
            let called = next.is_some_and(|n| chars[n] == '(');
            if LABEL_LISTS.contains(&word.as_str()) && called {
                i = skip_to(next.expect("a parenthesis"), ')');
            } else if !(called
                || KEYWORDS.contains(&word.as_str())
                || word.starts_with(|c: char| c.is_ascii_digit() || c == '$' || c == '.'))
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}
