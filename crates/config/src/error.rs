//! Errors reported while loading a configuration folder.
//!
//! Loading never stops at the first problem: every check pushes a [`ConfigError`] into a
//! list, and the caller gets them all at once as [`ConfigErrors`]. Each error names the
//! file, the resource (`Kind/name`), the field path (`spec.ports[1].protocol`) and, when the
//! YAML parser knows it, the line, so a user can fix a whole folder in one pass.

use std::fmt;
use std::path::PathBuf;

/// One problem found in one configuration file.
///
/// Displayed as `{file}:{line}: {resource} {field}: {message}`; parts that are unknown
/// (no line, no resource, no field) are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the problem is in (the folder itself when it cannot be read).
    pub file: PathBuf,
    /// The resource, as `Kind/name`, when the problem is inside one.
    pub resource: Option<String>,
    /// Dotted field path from the top of the document, e.g. `spec.ports[1].protocol`;
    /// empty when the problem concerns the whole file or document.
    pub field: String,
    /// 1-based line of the offending node, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do about it, lowercase.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(":")?;
        if let Some(resource) = &self.resource {
            write!(f, " {resource}")?;
        }
        if !self.field.is_empty() {
            write!(f, " {}", self.field)?;
        }
        if self.resource.is_some() || !self.field.is_empty() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found while loading, in file order and then line order.
///
/// Never empty when returned from [`crate::load_dir`] or [`crate::load_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Iterate over the individual errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects errors for one file, stamping each with the file and the current resource.
///
/// Validation code only says *where* (field path and line) and *what*; the sink adds the
/// rest so no check can forget it.
#[derive(Debug)]
pub(crate) struct Sink {
    file: PathBuf,
    resource: Option<String>,
    errors: Vec<ConfigError>,
}

impl Sink {
    pub(crate) fn new(file: PathBuf) -> Self {
        Self {
            file,
            resource: None,
            errors: Vec::new(),
        }
    }

    /// Attribute the following errors to `resource` (`Kind/name`), or to no resource.
    pub(crate) fn set_resource(&mut self, resource: Option<String>) {
        self.resource = resource;
    }

    pub(crate) fn file(&self) -> &PathBuf {
        &self.file
    }

    /// Record one error at `field` (a path such as `spec.ports[0].port`) and `line`.
    pub(crate) fn error(&mut self, field: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            resource: self.resource.clone(),
            field: field.to_owned(),
            line,
            message: message.into(),
        });
    }

    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_every_known_part() {
        let full = ConfigError {
            file: PathBuf::from("a.yaml"),
            resource: Some("BrokerListener/default".into()),
            field: "spec.ports[1].protocol".into(),
            line: Some(12),
            message: "unknown value".into(),
        };
        assert_eq!(
            full.to_string(),
            "a.yaml:12: BrokerListener/default spec.ports[1].protocol: unknown value"
        );
        let bare = ConfigError {
            file: PathBuf::from("a.yaml"),
            resource: None,
            field: String::new(),
            line: None,
            message: "cannot read file".into(),
        };
        assert_eq!(bare.to_string(), "a.yaml: cannot read file");
    }
}
