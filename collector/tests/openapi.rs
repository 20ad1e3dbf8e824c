//! Issue #23: `docs/openapi.json` is a valid OpenAPI 3.0 document as `openapi-spec-validator`
//! reads it, every operation has an `operationId` and tags, and `/api/health`'s objects are
//! described by their properties.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn document_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn openapi_document_passes_openapi_spec_validator() {
    let probe = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .expect("python3 is needed to validate docs/openapi.json");
    assert!(
        probe.status.success(),
        "the Python module openapi_spec_validator is missing: \
         `python3 -m pip install openapi-spec-validator` (.ci/test installs it)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(document_path())
        .output()
        .expect("running openapi_spec_validator");
    assert!(
        out.status.success(),
        "docs/openapi.json fails openapi-spec-validator:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_operation_has_an_operation_id_and_tags() {
    let doc = document();
    let declared: Vec<&str> = doc["tags"]
        .as_array()
        .expect("top-level tags")
        .iter()
        .map(|t| t["name"].as_str().expect("tag name"))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id), "{method} {path}: operationId {id} twice");
            let tags = op["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no tags"));
            assert!(!tags.is_empty(), "{method} {path}: no tags");
            for t in tags {
                let t = t.as_str().unwrap();
                assert!(
                    declared.contains(&t),
                    "{method} {path}: tag {t} not declared"
                );
            }
        }
    }
}

#[test]
fn health_objects_are_described_by_their_properties() {
    let doc = document();
    let health = &doc["components"]["schemas"]["Health"]["properties"];
    for key in ["ingest", "memory", "spill", "persistence"] {
        let props = health[key]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("Health.{key} has no properties"));
        assert!(!props.is_empty(), "Health.{key}");
    }
    // Null where it can be: no spill without history.spill, no gate with an external broker.
    for key in ["spill", "connections"] {
        assert_eq!(
            health[key]["nullable"], true,
            "Health.{key} is not nullable"
        );
        assert_eq!(health[key]["type"], "object", "Health.{key}");
    }
}
