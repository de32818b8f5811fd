//! Validation against the JSON Schemas in the repository's `schemas/` folder.
//!
//! The validator is `boon`: it implements drafts 4 to 2020-12, bundles the metaschemas and
//! loads `$ref`s from files only, so it needs no network and adds seven small crates to the
//! build (`jsonschema` without default features adds about thirty, among them `fancy-regex`,
//! `num` and `fraction`).
//!
//! Format (`date-time`, `uri`, ...) and content (`contentEncoding: base64`) assertions are
//! switched on for every draft: the schemas promise RFC 3339 times and valid base64, and a
//! test that only checked shapes would let a broken `time` through.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The CloudEvents 1.0 JSON Schema, a copy of the specification's (see `schemas/README.md`).
pub const CLOUDEVENTS_SCHEMA: &str = "reference/cloudevents.schema.json";

/// The repository's `schemas/` folder.
pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Validates `instance` against `schemas/<schema_file>`; the error lists every failed keyword
/// with its location in the instance and in the schema.
pub fn validate(schema_file: &str, instance: &Value) -> Result<(), String> {
    COMPILED.with_borrow_mut(|compiled| {
        let index = compiled.index(schema_file)?;
        compiled.schemas.validate(instance, index).map_err(|error| format!("{error:#}"))
    })
}

/// Validates `instance` against the CloudEvents specification's JSON Schema.
pub fn validate_cloudevent(instance: &Value) -> Result<(), String> {
    validate(CLOUDEVENTS_SCHEMA, instance)
}

/// Compiles `schemas/<schema_file>` (and what it references), checking it against its
/// metaschema.
pub fn compile(schema_file: &str) -> Result<(), String> {
    COMPILED.with_borrow_mut(|compiled| compiled.index(schema_file).map(|_| ()))
}

/// Reads TOML text as the JSON value it maps to (tables become objects), the form
/// `gridmq-config.schema.json` describes.
pub fn toml_to_json(text: &str) -> Result<Value, String> {
    toml::from_str(text).map_err(|error| error.to_string())
}

thread_local! {
    /// Schemas compiled on this thread. Compiling the config schema takes a good part of a
    /// second in a debug build, and tests validate hundreds of documents; the compiler is not
    /// `Send`, so each test thread keeps its own.
    static COMPILED: std::cell::RefCell<Compiled> = std::cell::RefCell::new(Compiled::new());
}

struct Compiled {
    compiler: boon::Compiler,
    schemas: boon::Schemas,
}

impl Compiled {
    fn new() -> Compiled {
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        compiler.enable_content_assertions();
        Compiled { compiler, schemas: boon::Schemas::new() }
    }

    /// The compiled schema of `schemas/<schema_file>`; boon compiles each location once.
    fn index(&mut self, schema_file: &str) -> Result<boon::SchemaIndex, String> {
        let path = schemas_dir().join(schema_file);
        let path = path.canonicalize().map_err(|error| format!("{}: {error}", path.display()))?;
        let location = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
        self.compiler.compile(location, &mut self.schemas).map_err(|error| format!("{error:#}"))
    }
}
