//! Turning [`BuiltInTransformationSettings`] into compiled rules, collecting every
//! problem (with the rule and field it is in) instead of stopping at the first.

use std::fmt;

use super::input::{CompiledInput, Source};
use super::map::{MapRule, Output};
use crate::config::{BuiltInTransformationSettings, DatasetConfig, FilterConfig, MapConfig};
use crate::expr::{Expr, ParseError};
use crate::path::{InputSpec, OutputSpec, PathError, Reference};

/// One problem in the settings, e.g. `map[2].expression: column 7: expected `)`, …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct ConfigError {
    /// Which field: `datasets[0].key`, `filter[1].inputs[0]`, `map[2].expression`, …
    /// (indexes are 0-based, as in a JSON pointer).
    pub location: String,
    pub kind: ConfigErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Expression(#[from] ParseError),
    #[error("{0}")]
    Rule(String),
}

/// Every problem found in one settings object.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(crate) struct Dataset {
    pub key: String,
    pub inputs: Vec<CompiledInput>,
    pub expr: Expr,
}

pub(crate) struct Filter {
    pub description: Option<String>,
    pub inputs: Vec<CompiledInput>,
    pub expr: Expr,
}

pub(crate) struct Compiled {
    pub datasets: Vec<Dataset>,
    pub filters: Vec<Filter>,
    pub maps: Vec<MapRule>,
    pub last_slots: usize,
}

/// What kind of rule an input belongs to decides what it may read.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Dataset,
    Filter,
    Map,
}

struct Compiler<'c> {
    errors: Vec<ConfigError>,
    aliases: Vec<String>,
    last_slots: usize,
    settings: &'c BuiltInTransformationSettings,
}

pub(crate) fn compile(settings: &BuiltInTransformationSettings) -> Result<Compiled, ConfigErrors> {
    let mut c = Compiler {
        errors: Vec::new(),
        aliases: Vec::new(),
        last_slots: 0,
        settings,
    };
    let datasets = (c.settings.datasets.iter().enumerate())
        .filter_map(|(i, d)| c.dataset(i, d))
        .collect();
    let filters = (c.settings.filter.iter().enumerate())
        .filter_map(|(i, f)| c.filter(i, f))
        .collect();
    let maps = (c.settings.map.iter().enumerate())
        .filter_map(|(i, m)| c.map(i, m))
        .collect();
    if !c.errors.is_empty() {
        return Err(ConfigErrors(c.errors));
    }
    Ok(Compiled {
        datasets,
        filters,
        maps,
        last_slots: c.last_slots,
    })
}

impl Compiler<'_> {
    fn error(&mut self, location: String, kind: impl Into<ConfigErrorKind>) {
        self.errors.push(ConfigError {
            location,
            kind: kind.into(),
        });
    }

    fn rule_error(&mut self, location: String, message: impl Into<String>) {
        self.error(location, ConfigErrorKind::Rule(message.into()));
    }

    fn expression(&mut self, location: String, text: &str, inputs: usize) -> Option<Expr> {
        Expr::compile(text, inputs)
            .map_err(|e| self.error(location, e))
            .ok()
    }

    // Each rule compiler records its problems and returns `None` if there were any; the
    // whole compile then fails, so a half-compiled rule never runs.

    fn dataset(&mut self, index: usize, config: &DatasetConfig) -> Option<Dataset> {
        let at = format!("datasets[{index}]");
        let before = self.errors.len();
        let (key, alias) = match config.key.rsplit_once(" as ") {
            Some((key, alias)) => (key.trim(), alias.trim()),
            None => (config.key.trim(), config.key.trim()),
        };
        if key.is_empty() || alias.is_empty() {
            self.rule_error(format!("{at}.key"), "expected `key` or `key as alias`");
        } else if self.aliases.iter().any(|a| a == alias) {
            self.rule_error(
                format!("{at}.key"),
                format!("dataset `{alias}` is defined twice"),
            );
        }
        self.aliases.push(alias.to_owned());
        let inputs = self.inputs(&at, &config.inputs, Place::Dataset, Some(alias));
        let expr = self.expression(
            format!("{at}.expression"),
            &config.expression,
            config.inputs.len(),
        );
        if self.errors.len() > before {
            return None;
        }
        Some(Dataset {
            key: key.to_owned(),
            inputs,
            expr: expr?,
        })
    }

    fn filter(&mut self, index: usize, config: &FilterConfig) -> Option<Filter> {
        let at = format!("filter[{index}]");
        let before = self.errors.len();
        let inputs = self.inputs(&at, &config.inputs, Place::Filter, None);
        let expr = self.expression(
            format!("{at}.expression"),
            &config.expression,
            config.inputs.len(),
        );
        if self.errors.len() > before {
            return None;
        }
        Some(Filter {
            description: config.description.clone(),
            inputs,
            expr: expr?,
        })
    }

    fn map(&mut self, index: usize, config: &MapConfig) -> Option<MapRule> {
        let at = format!("map[{index}]");
        let before = self.errors.len();
        if config.inputs.is_empty() {
            self.rule_error(
                format!("{at}.inputs"),
                "a map rule needs at least one input",
            );
        }
        let inputs = self.inputs(&at, &config.inputs, Place::Map, None);
        let output = match OutputSpec::parse(config.output.as_deref().unwrap_or("")) {
            Ok(OutputSpec::Drop) => Output::Drop,
            Ok(OutputSpec::Payload(path)) => Output::Payload(path),
            Ok(OutputSpec::Metadata(field)) => Output::Metadata(field),
            Err(e) => {
                self.error(format!("{at}.output"), e);
                Output::Drop
            }
        };
        let driver = inputs
            .iter()
            .position(|i| i.source.path().is_some_and(|p| p.wildcard().is_some()));
        if let Some(problem) = wildcard_problem(driver.is_some(), &output) {
            self.rule_error(format!("{at}.output"), problem);
        }
        let expr = match (&config.expression, &output) {
            (Some(_), Output::Drop) => {
                self.rule_error(
                    format!("{at}.expression"),
                    "a rule with an empty output only removes its inputs; it cannot have an expression",
                );
                None
            }
            (Some(text), _) => {
                self.expression(format!("{at}.expression"), text, config.inputs.len())
            }
            (None, _) => None,
        };
        if self.errors.len() > before {
            return None;
        }
        Some(MapRule {
            inputs,
            driver,
            output,
            expr,
        })
    }

    fn inputs(
        &mut self,
        at: &str,
        texts: &[String],
        place: Place,
        own: Option<&str>,
    ) -> Vec<CompiledInput> {
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let location = format!("{at}.inputs[{i}]");
                match self.input(text, place, own) {
                    Ok(input) => Some(input),
                    Err(kind) => {
                        self.error(location, kind);
                        None
                    }
                }
            })
            .collect()
    }

    fn input(
        &mut self,
        text: &str,
        place: Place,
        own: Option<&str>,
    ) -> Result<CompiledInput, ConfigErrorKind> {
        let spec = InputSpec::parse(text)?;
        let rule = |m: &str| Err(ConfigErrorKind::Rule(m.to_owned()));
        let wildcard = spec
            .reference
            .path()
            .is_some_and(|p| p.wildcard().is_some());
        if wildcard && place != Place::Map {
            return rule("wildcards are only allowed in map rules");
        }
        if place == Place::Dataset && (spec.last_known || spec.default.is_some()) {
            return rule("`? $last` and `??` are not available in dataset conditions");
        }
        let source = match spec.reference {
            Reference::Payload(path) => Source::Payload(path),
            Reference::Metadata(field) => Source::Metadata(field),
            Reference::Context { alias, path } => match (place, alias) {
                (Place::Dataset, None) => Source::Record(path),
                (Place::Dataset, Some(alias)) if Some(alias.as_str()) == own => Source::Record(path),
                (Place::Dataset, Some(_)) => {
                    return rule("a dataset condition reads the message (`$source.`) and its own records (`$context.`) only")
                }
                (_, None) => return rule("name the dataset: `$context(alias).field`"),
                (_, Some(alias)) => match self.aliases.iter().position(|a| *a == alias) {
                    Some(i) => Source::Context(i, path),
                    None => return Err(ConfigErrorKind::Rule(format!("no dataset is named `{alias}`"))),
                },
            },
        };
        let last_slot = spec.last_known.then(|| {
            self.last_slots += 1;
            self.last_slots - 1
        });
        Ok(CompiledInput {
            source,
            last_slot,
            default: spec.default,
        })
    }
}

fn wildcard_problem(input_wildcard: bool, output: &Output) -> Option<&'static str> {
    let output_wildcard = matches!(output, Output::Payload(p) if p.wildcard().is_some());
    match (input_wildcard, output) {
        (true, Output::Metadata(_)) => Some("a wildcard rule cannot write to metadata"),
        (true, Output::Payload(_)) if !output_wildcard => {
            Some("the output needs a `*` to place what the input's `*` captures")
        }
        (false, _) if output_wildcard => Some("the output has a `*` but no input has one"),
        _ => None,
    }
}
