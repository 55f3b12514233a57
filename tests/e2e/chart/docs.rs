//! The chart's documentation and generated files: the CRD template, Chart.yaml's versions, and
//! the README, whose values table helm-docs writes from values.yaml.

use std::{collections::BTreeSet, process::Command};

use serde_json::json;
use testkit::control_plane::find_binary;

use super::*;

#[test]
fn crd_templates_match_the_generated_crds() {
    let scratch = Scratch::new("crd");
    let rendered = render(&scratch, "zoho", "ops", &json!({}));
    let unkept = render(&scratch, "zoho", "ops", &json!({"crds": {"keep": false}}));
    for (file, generated) in zoho_token_operator::crds() {
        let generated: Value = serde_saphyr::from_str(&generated).expect("the generated CRD parses");
        let name = generated["metadata"]["name"].as_str().expect("the CRD has a name").to_string();
        let mut crd = rendered.get("CustomResourceDefinition", &name).clone();
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "crds.keep defaults to true");
        assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/instance"], "zoho");

        // Everything but the labels and annotations the chart adds must be the generated CRD.
        let metadata = crd["metadata"].as_object_mut().expect("the CRD has metadata");
        metadata.remove("labels");
        metadata.remove("annotations");
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed: Value = serde_saphyr::from_str(&read(&path)).expect("the committed CRD parses");
        assert!(
            crd == committed,
            "the chart's CRD differs from crds/{file}; run scripts/chart-sync\n{}",
            diff_hint(&crd, &committed)
        );
        assert!(
            crd == generated,
            "the chart's CRD differs from `zoho-token-operator crd`; regenerate crds/ \
             (`cargo run -q -- crd --output-dir crds`), then run scripts/chart-sync\n{}",
            diff_hint(&crd, &generated)
        );
        let annotations = &unkept.get("CustomResourceDefinition", &name)["metadata"]["annotations"];
        assert!(annotations.get("helm.sh/resource-policy").is_none(), "crds.keep=false still keeps: {annotations}");
    }
}

#[test]
fn app_version_is_the_crate_version() {
    let chart: Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml parses");
    assert_eq!(chart["name"], "zoho-token-operator");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml's appVersion is not the crate's version");
    assert_eq!(chart["kubeVersion"], ">=1.28.0-0");
}

/// The CRD template and the README are exactly what scripts/chart-sync writes: the generated CRD
/// wrapped in the chart's template, and README.md.gotmpl filled in by helm-docs from values.yaml.
#[test]
fn generated_files_are_up_to_date() {
    let helm_docs = find_binary("helm-docs").unwrap_or_else(|e| panic!("{e:#}"));
    let check = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chart-sync"))
        .arg("--check")
        .env("HELM_DOCS", helm_docs)
        .output()
        .expect("run scripts/chart-sync --check");
    assert!(check.status.success(), "scripts/chart-sync --check failed:\n{}", output_text(&check));
}

/// values.schema.json describes every key and values.yaml gives each a default; values.yaml's
/// `# --` comment of each key is its description in the README's values table.
#[test]
fn every_value_is_documented_in_values_yaml_schema_and_readme() {
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).expect("the schema parses");
    let values: Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values.yaml parses");
    let readme = read(&format!("{CHART}/README.md"));
    // helm-docs writes a row `| key | type | default | description |` for each documented key.
    let described: BTreeSet<&str> = readme
        .lines()
        .filter_map(|row| {
            let cells: Vec<&str> = row.strip_prefix("| ")?.strip_suffix(" |")?.split(" | ").collect();
            (cells.len() >= 4 && !cells[cells.len() - 1].trim().is_empty()).then_some(cells[0])
        })
        .collect();
    let mut leaves = Vec::new();
    schema_leaves(&schema, "", &mut leaves);
    assert!(leaves.len() > 40, "the schema describes only {} values", leaves.len());
    for path in &leaves {
        let default = path.split('.').try_fold(&values, |value, key| value.get(key));
        assert!(default.is_some(), "{path} is in values.schema.json but has no default in values.yaml");
        let node = path.split('.').try_fold(&schema, |s, key| s.get("properties")?.get(key)).expect("leaf in schema");
        assert!(
            node.get("description").is_some_and(|d| d.as_str().is_some_and(|d| !d.is_empty())),
            "{path} has no description in values.schema.json"
        );
        assert!(
            described.contains(path.as_str()),
            "{path} has no description in the README's values table: give it a `# --` comment in \
             values.yaml and run scripts/chart-sync"
        );
    }
}

/// The dotted paths of the schema's leaves: properties that have no properties of their own.
fn schema_leaves(schema: &Value, prefix: &str, leaves: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (key, property) in properties {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if property.get("properties").is_some() {
            schema_leaves(property, &path, leaves);
        } else {
            leaves.push(path);
        }
    }
}

/// The first differing path between two JSON values, to make a failed comparison readable.
fn diff_hint(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => walk(u, v, &format!("{path}.{k}")),
                    (u, v) => Some(format!("{path}.{k}: chart {u:?} vs generated {v:?}")),
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (u, v))| walk(u, v, &format!("{path}[{i}]")))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: chart {a} vs generated {b}")),
        }
    }
    walk(a, b, "").unwrap_or_default()
}
