//! Confinement of the app (SPEC.md, "Confinement of the child").
//!
//! Not built yet: until it is, any confinement option is refused (exit 125) rather than
//! silently ignored, so a policy is never believed to apply when it does not.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::spawn::ChildFailure;

const CONFINEMENT_OPTIONS: &[&str] = &[
    "user",
    "groups",
    "cap-keep",
    "no-new-privs",
    "allow-new-privs",
    "rlimit",
    "umask",
    "fs-ro",
    "fs-rx",
    "fs-rw",
    "tcp-bind",
    "tcp-connect",
    "landlock-scope",
    "landlock",
    "seccomp",
    "seccomp-action",
];

#[derive(Debug)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Policy;

pub fn prepare(config: &Config, _executable: &Path) -> Result<Policy, PolicyError> {
    if let Some(name) = CONFINEMENT_OPTIONS
        .iter()
        .find(|n| config.settings.options.contains_key(*n))
    {
        return Err(PolicyError(format!(
            "--{name}: confinement is not available in this build"
        )));
    }
    Ok(Policy)
}

impl Policy {
    pub fn apply_in_child(&self) -> Result<(), ChildFailure> {
        Ok(())
    }

    pub fn describe(&self, _map: &mut Map<String, Value>) {}
}
