//! Chart values: parsing a values document and Helm-style deep merging.
//!
//! Also home of the one YAML reader the render module uses ([`from_yaml`]), set up so that
//! parse errors never quote the input back: values may hold secrets.

use serde_json::{Map, Value};

/// A values document that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// The text is not YAML.
    #[error("{what}: invalid YAML: {message}")]
    Yaml {
        /// Where the text came from.
        what: String,
        /// The parser's message (position only, never the text).
        message: String,
    },
    /// The document is YAML but not a map.
    #[error("{what}: values must be a map, got {found}")]
    NotAMap {
        /// Where the text came from.
        what: String,
        /// The kind of YAML node found instead.
        found: &'static str,
    },
}

/// Deep-merges `overlay` into `base`, Helm style.
///
/// Maps merge key by key, recursively; anything else (lists, scalars) in `overlay` replaces
/// what `base` had. A `null` in an overlay map deletes that key from `base`. A top-level
/// `null` overlay has no key to delete and changes nothing.
pub fn merge(base: &mut Value, overlay: &Value) {
    match overlay {
        Value::Null => {}
        Value::Object(overlay_map) => merge_map(base, overlay_map),
        other => *base = other.clone(),
    }
}

fn merge_map(base: &mut Value, overlay: &Map<String, Value>) {
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let Some(base_map) = base.as_object_mut() else {
        return;
    };
    for (key, value) in overlay {
        if value.is_null() {
            base_map.remove(key);
        } else {
            merge(base_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Parses a values document that must be a YAML map; an empty document is `{}`.
///
/// `what` names the source in errors, e.g. `"ConfigMap edge-values key values.yaml"`.
pub fn parse_values_yaml(text: &str, what: &str) -> Result<Value, ValuesError> {
    let value = from_yaml(text).map_err(|e| ValuesError::Yaml { what: what.to_owned(), message: e.to_string() })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        other => Err(ValuesError::NotAMap { what: what.to_owned(), found: type_name(&other) }),
    }
}

/// Parses one YAML document into JSON; errors carry a position but no snippet of the text.
pub(crate) fn from_yaml(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { with_snippet: false })
}

/// A short name for the kind of a value, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Why `values` do not meet `schema` (a chart's `values.schema.json`), if they do not: each
/// failing path with what is wrong there (never the value itself), at most ten. References to other files or URLs are
/// never fetched.
pub fn schema_violations(schema: &Value, values: &Value) -> Option<String> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return Some(format!("values.schema.json is not a usable schema: {e}")),
    };
    let errors: Vec<String> = validator
        .iter_errors(values)
        .take(10)
        .map(|e| {
            let path = e.instance_path().to_string();
            // Masked: the values (a password, say) never reach the DIG's status.
            format!("{}: {}", if path.is_empty() { "/" } else { path.as_str() }, e.masked())
        })
        .collect();
    (!errors.is_empty()).then(|| format!("values do not meet values.schema.json: {}", errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(base: Value, overlay: Value) -> Value {
        let mut base = base;
        merge(&mut base, &overlay);
        base
    }

    #[test]
    fn schema_errors_name_the_path_never_the_value() {
        let schema =
            json!({"type": "object", "properties": {"password": {"type": "integer"}, "mode": {"enum": ["a"]}}});
        let e = schema_violations(&schema, &json!({"password": "hunter2", "mode": "s3cret-mode"})).unwrap();
        assert!(e.contains("/password") && e.contains("/mode"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("s3cret-mode"), "{e}");
    }

    #[test]
    fn maps_merge_recursively() {
        let out = merged(
            json!({"image": {"repository": "nginx", "tag": "1.0"}, "replicas": 1}),
            json!({"image": {"tag": "2.0"}, "extra": true}),
        );
        assert_eq!(out, json!({"image": {"repository": "nginx", "tag": "2.0"}, "replicas": 1, "extra": true}));
    }

    #[test]
    fn lists_and_scalars_replace() {
        let out = merged(
            json!({"ports": [80, 443], "name": "a", "cfg": {"x": 1}}),
            json!({"ports": [8080], "name": {"nested": 1}, "cfg": "flat"}),
        );
        assert_eq!(out, json!({"ports": [8080], "name": {"nested": 1}, "cfg": "flat"}));
    }

    #[test]
    fn null_deletes_keys_at_any_depth() {
        let out = merged(
            json!({"a": 1, "b": {"c": 2, "d": 3}}),
            json!({"a": null, "b": {"c": null}, "new": {"gone": null, "kept": 1}}),
        );
        assert_eq!(out, json!({"b": {"d": 3}, "new": {"kept": 1}}));
    }

    #[test]
    fn top_level_null_overlay_changes_nothing() {
        assert_eq!(merged(json!({"a": 1}), Value::Null), json!({"a": 1}));
    }

    #[test]
    fn later_overlays_win() {
        let mut values = json!({"replicas": 1, "image": {"tag": "chart"}, "env": "chart"});
        merge(&mut values, &json!({"replicas": 2, "image": {"tag": "profile"}}));
        merge(&mut values, &json!({"image": {"tag": "override"}}));
        assert_eq!(values, json!({"replicas": 2, "image": {"tag": "override"}, "env": "chart"}));
    }

    #[test]
    fn parses_a_map_and_empty_documents() {
        let v = parse_values_yaml("a: 1\nb:\n  c: [x]\n", "test").unwrap();
        assert_eq!(v, json!({"a": 1, "b": {"c": ["x"]}}));
        assert_eq!(parse_values_yaml("", "test").unwrap(), json!({}));
        assert_eq!(parse_values_yaml("# only a comment\n", "test").unwrap(), json!({}));
    }

    #[test]
    fn rejects_non_maps_naming_the_source() {
        let err = parse_values_yaml("- a\n- b\n", "ConfigMap edge-values key values.yaml").unwrap_err().to_string();
        assert_eq!(err, "ConfigMap edge-values key values.yaml: values must be a map, got a list");
    }

    #[test]
    fn yaml_errors_do_not_echo_the_text() {
        let err = parse_values_yaml("password: 'hunter2\n  x: y: z", "Secret s key v").unwrap_err().to_string();
        assert!(err.starts_with("Secret s key v: invalid YAML: "), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
