//! `harbor/openapi.yaml` as JSON, and a small validator for what it uses (`$ref`, `type`,
//! `required`, `properties`, `items`, `enum`, `minLength`, `minItems`, `nullable`): enough to
//! check that what the router answers is what the document says.

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The document.
pub(crate) fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("read openapi.yaml");
    let docs = YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML");
    to_json(&docs[0])
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect::<Map<_, _>>(),
        ),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Boolean(b) => Value::Bool(*b),
        _ => Value::Null,
    }
}

/// The operation object for `method` on `path` (a template such as `/api/v1/scan/{id}/report`).
pub(crate) fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    doc["paths"]
        .get(path)
        .and_then(|p| p.get(method))
        .unwrap_or_else(|| panic!("openapi.yaml has no {method} {path}"))
}

/// The response object for `status` of an operation, `$ref`s resolved.
pub(crate) fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> &'a Value {
    let r = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("status {status} undocumented in {op}"));
    resolve(doc, r)
}

/// Follows a local `$ref`.
pub(crate) fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => v,
    }
}

/// Checks an answer against the document: status documented, content type documented for it
/// (none when the document gives no content), body valid against its schema.
pub(crate) fn check_answer(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) {
    let op = operation(doc, method, path);
    let resp = response(doc, op, status);
    let Some(content) = resp.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_empty(),
            "{method} {path} {status}: body without documented content"
        );
        return;
    };
    let ct = content_type.unwrap_or_else(|| panic!("{method} {path} {status}: no content type"));
    let media = content
        .get(ct)
        .unwrap_or_else(|| panic!("{method} {path} {status}: content type {ct:?} undocumented"));
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: body is not JSON: {e}"));
    let errors = validate(doc, &media["schema"], &value, "$");
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{value:#}"
    );
}

/// Schema violations of `value` (empty: valid).
pub(crate) fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut errors = Vec::new();
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return errors;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: not {t}: {value}"));
            return errors;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    if let (Some(min), Some(s)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) && (s.chars().count() as u64) < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if let (Some(min), Some(a)) = (
        schema.get("minItems").and_then(Value::as_u64),
        value.as_array(),
    ) && (a.len() as u64) < min
    {
        errors.push(format!("{at}: fewer than {min} items"));
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let key = r.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                errors.push(format!("{at}: missing {key}"));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, s) in props {
                if let Some(v) = obj.get(k) {
                    errors.extend(validate(doc, s, v, &format!("{at}.{k}")));
                }
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let known = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                if known.is_none_or(|p| !p.contains_key(k)) {
                    errors.extend(validate(doc, extra, v, &format!("{at}.{k}")));
                }
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), value.as_array()) {
        for (i, v) in a.iter().enumerate() {
            errors.extend(validate(doc, items, v, &format!("{at}[{i}]")));
        }
    }
    errors
}
