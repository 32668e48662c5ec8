//! The JSON Schemas of the events, generated from the Rust types and committed under
//! `nats/schemas/` for the consumers of our streams (a test fails when code and files drift;
//! `wxlogin events schemas --out nats/schemas` writes them again). One file per kind and
//! version: a new version keeps its predecessor's file, as readers keep reading it.

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

use super::{LoginRequested, LoginResult, SessionKeyReset, UnionidLearned};
use crate::fixtures::EventLine;

/// How one schema is made.
pub type MakeSchema = fn() -> Schema;

/// Every schema we publish: its file name (without `.json`) and how it is made. A new event
/// type or version is one line here (and its file, written by `wxlogin events schemas`).
pub const SCHEMAS: &[(&str, MakeSchema)] = &[
    ("login_requested.v1", || {
        without_phone(versioned::<LoginRequested>("v", 1))
    }),
    ("login_requested.v2", || {
        phone_only(versioned::<LoginRequested>("v", 2))
    }),
    ("login_result.v1", || {
        without_phone(versioned::<LoginResult>("v", 1))
    }),
    ("login_result.v2", || {
        phone_only(versioned::<LoginResult>("v", 2))
    }),
    ("unionid_learned.v1", || versioned::<UnionidLearned>("v", 1)),
    ("session_key_reset.v1", || {
        versioned::<SessionKeyReset>("v", 1)
    }),
    ("export_line.v1", || versioned::<EventLine>("format", 1)),
];

/// `T`'s schema, its version field pinned to `version`: a reader of one version's schema
/// refuses another's events, as our readers do.
fn versioned<T: JsonSchema>(field: &str, version: u32) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    if let Some(v) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut(field))
        .and_then(|v| v.as_object_mut())
    {
        v.insert("const".into(), version.into());
    }
    schema
}

/// Whether a `oneOf` branch is the phone outcome.
fn is_phone_outcome(branch: &serde_json::Value) -> bool {
    branch["properties"]["outcome"]["const"] == "phone"
}

/// One type reads two versions: version 1 of a request has no `phone`, of a result no phone
/// outcome. (What version 1 was before phone numbers, unchanged.)
fn without_phone(mut schema: Schema) -> Schema {
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.remove("phone");
    }
    if let Some(defs) = schema.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        defs.remove("PhoneExchange");
    }
    if let Some(branches) = schema.get_mut("oneOf").and_then(|b| b.as_array_mut()) {
        branches.retain(|b| !is_phone_outcome(b));
    }
    schema
}

/// Version 2: a request with its `phone`, a result with the phone outcome.
fn phone_only(mut schema: Schema) -> Schema {
    if schema.get("oneOf").is_some() {
        if let Some(branches) = schema.get_mut("oneOf").and_then(|b| b.as_array_mut()) {
            branches.retain(is_phone_outcome);
        }
    } else if let Some(required) = schema.get_mut("required").and_then(|r| r.as_array_mut()) {
        required.push("phone".into());
    }
    schema
}

/// A schema as its committed file holds it: pretty JSON and a final newline.
pub fn file_text(make: MakeSchema) -> String {
    let mut text = serde_json::to_string_pretty(&make()).expect("a schema serializes");
    text.push('\n');
    text
}

/// Writes every schema into `dir`; returns the paths written.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    SCHEMAS
        .iter()
        .map(|(name, make)| {
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, file_text(*make))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats/schemas")
    }

    #[test]
    fn the_committed_schemas_are_what_the_types_make() {
        for (name, make) in SCHEMAS {
            let path = dir().join(format!("{name}.json"));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == file_text(*make),
                "{} differs from the Rust types: run `cargo run -- events schemas --out \
                 nats/schemas` (a changed event needs a new version, not a changed file)",
                path.display()
            );
        }
    }

    #[test]
    fn every_schema_file_is_one_the_code_makes() {
        for entry in std::fs::read_dir(dir()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".json") {
                assert!(
                    SCHEMAS.iter().any(|(n, _)| *n == stem),
                    "nats/schemas/{name} is made by nothing in SCHEMAS"
                );
            }
        }
    }
}
