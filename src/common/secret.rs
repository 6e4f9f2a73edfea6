//! Secrets in config: read from a file or an environment variable (or, discouraged, written
//! inline), and never printed by `Debug` or logs.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where a secret comes from. Written in YAML as exactly one of
/// `{file: /etc/medic/redis.pass}`, `{env: REDIS_PASSWORD}` or `{value: "inline"}`.
/// A relative `file` is relative to the config file's folder. A file's trailing whitespace
/// (the newline editors add) is dropped.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Read from this file each time the component is built (so a reload picks up rotation).
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
    /// Written in the config itself. Prefer `file` or `env`: configs get copied around.
    Value(String),
}

/// A secret's value. `Debug` and `Display` print `<redacted>`; use [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    /// The value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret that could not be read. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {0} (named as a secret) is not set or not UTF-8")]
    Env(String),
}

impl Secret {
    /// Reads the secret's value now.
    pub fn read(&self) -> Result<SecretString, SecretError> {
        match self {
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString(s.trim_end().to_string()))
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
            Secret::Env(name) => std::env::var(name)
                .map(SecretString)
                .map_err(|_| SecretError::Env(name.clone())),
            Secret::Value(v) => Ok(SecretString(v.clone())),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
            Secret::Env(n) => f.debug_tuple("Env").field(n).finish(),
            Secret::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// The YAML form: a map with exactly one of the keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default, deserialize_with = "super::yaml::deserialize_opt_path")]
    file: Option<PathBuf>,
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSecret::deserialize(d)?;
        match (raw.file, raw.env, raw.value) {
            (Some(p), None, None) => Ok(Secret::File(p)),
            (None, Some(n), None) => Ok(Secret::Env(n)),
            (None, None, Some(v)) => Ok(Secret::Value(v)),
            _ => Err(serde::de::Error::custom(
                "a secret needs exactly one of `file: PATH`, `env: VARIABLE` or `value: TEXT`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_source_and_never_debug_prints_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s: Secret =
            crate::common::yaml::parse_yaml(&dir.path().join("medic.yaml"), "file: pw\n").unwrap();
        assert_eq!(s, Secret::File(f.clone()));
        assert_eq!(s.read().unwrap().expose(), "s3cret");

        let v: Secret = crate::common::yaml::parse_yaml(&f, "value: hunter2\n").unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
        assert!(!format!("{:?}", v.read().unwrap()).contains("hunter2"));

        let e = Secret::Env("MEDIC_TEST_SURELY_UNSET_VAR".into());
        assert!(matches!(e.read(), Err(SecretError::Env(_))));

        let both = crate::common::yaml::parse_yaml::<Secret>(&f, "env: A\nvalue: b\n");
        assert!(both.unwrap_err().to_string().contains("exactly one"));
        let unknown = crate::common::yaml::parse_yaml::<Secret>(&f, "path: x\n");
        assert!(unknown.is_err());
    }
}
