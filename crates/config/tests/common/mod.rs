//! Helpers shared by the integration tests: load a text and look at its errors.

#![allow(dead_code)] // each test binary uses a different subset

use edgeplane_config::{load_str, Config, ConfigError};

/// Load `text` as `test.yaml`, expecting success.
pub fn load(text: &str) -> Config {
    match load_str("test.yaml", text) {
        Ok(config) => config,
        Err(errors) => panic!("expected the manifest to load, got:\n{errors}"),
    }
}

/// Load `text` as `test.yaml`, expecting failure; the errors in report order.
pub fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("test.yaml", text) {
        Ok(config) => panic!("expected errors, the manifest loaded: {config:?}"),
        Err(errors) => errors.0,
    }
}

/// The one error at `field`, failing the test if there is not exactly one.
pub fn error_at(errors: &[ConfigError], field: &str) -> ConfigError {
    let found: Vec<&ConfigError> = errors.iter().filter(|e| e.field == field).collect();
    match found.as_slice() {
        [one] => (*one).clone(),
        _ => panic!(
            "expected one error at {field}, got {}:\n{}",
            found.len(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Fail unless some error at `field` says `says`.
pub fn expect_error(errors: &[ConfigError], field: &str, says: &str) {
    let found = errors
        .iter()
        .any(|e| e.field == field && e.message.contains(says));
    assert!(
        found,
        "expected an error at {field} saying {says:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A Broker named `default` with `spec` indented under it.
pub fn broker_with(spec: &str) -> String {
    format!(
        "apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata:\n  name: default\nspec:\n{}",
        indent(spec, 2)
    )
}

/// A BrokerListener named `name` with `spec` indented under it.
pub fn listener_with(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata:\n  name: {name}\nspec:\n{}",
        indent(spec, 2)
    )
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|line| format!("{pad}{line}\n")).collect()
}
