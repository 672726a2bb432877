//! What more than one fuzz target checks.

use husk_shim::config::{self, Config};
use serde_json::Value;

/// The resolved init options, written back as a config file, resolve to the same options: the
/// `--check` output can be fed back as a config. Unset options (null) are left out of the file.
pub fn assert_init_round_trips(config: &Config) {
    let first = config.init_json();
    let file: serde_json::Map<String, Value> = first
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = Value::Object(file).to_string();
    let settings = husk_shim::options::from_json("round trip", &text)
        .unwrap_or_else(|e| panic!("init_json {text} is not a valid config: {e}"));
    let again = config::resolve(settings).unwrap_or_else(|e| panic!("init_json {text} does not resolve: {e}"));
    assert_eq!(first, again.init_json(), "init_json {text} changed on a round trip");
}
