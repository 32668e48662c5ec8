//! The JSON Schemas of the events, generated from the Rust types and committed under
//! `nats/schemas/` for the consumers of our streams (a test fails when code and files drift;
//! `wxlogin events schemas --out nats/schemas` writes them again). One file per kind and
//! version: a new version keeps its predecessor's file, as readers keep reading it.

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

use super::{LoginRequested, LoginResult, UnionidLearned};
use crate::fixtures::EventLine;

/// How one schema is made.
pub type MakeSchema = fn() -> Schema;

/// Every schema we publish: its file name (without `.json`) and how it is made. A new event
/// type or version is one line here (and its file, written by `wxlogin events schemas`).
pub const SCHEMAS: &[(&str, MakeSchema)] = &[
    ("login_requested.v1", || versioned::<LoginRequested>("v", 1)),
    ("login_result.v1", || versioned::<LoginResult>("v", 1)),
    ("unionid_learned.v1", || versioned::<UnionidLearned>("v", 1)),
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
