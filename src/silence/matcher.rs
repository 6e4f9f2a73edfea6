//! Alertmanager's label matchers: `name` `=`, `!=`, `=~`, `!~` `value`; regexes are anchored
//! (`^(?:value)$`), and a missing label matches as the empty string.

use serde::{Deserialize, Serialize};

/// One matcher, in Alertmanager's API shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    /// `false` negates the matcher (`!=`, `!~`); Alertmanager's default is `true`.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatcherError {
    #[error("matcher {0:?}: the label name is empty")]
    EmptyName(String),
    #[error("matcher {name:?}: invalid regex {value:?}: {reason}")]
    Regex {
        name: String,
        value: String,
        reason: String,
    },
    #[error("matcher {0:?}: expected `name=value`, `name!=value`, `name=~regex` or `name!~regex`")]
    Syntax(String),
}

/// A matcher ready to test labels.
#[derive(Debug, Clone)]
pub struct Compiled {
    m: Matcher,
    re: Option<regex::Regex>,
}

impl Matcher {
    /// Parses `name=value`, `name!=value`, `name=~re`, `name!~re` (amtool's syntax; the
    /// value may be double-quoted).
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let bad = || MatcherError::Syntax(s.to_string());
        let pos = s.find(['=', '!']).ok_or_else(bad)?;
        let (name, rest) = s.split_at(pos);
        let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
            (true, true, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (false, true, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (false, false, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (true, false, v)
        } else {
            return Err(bad());
        };
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let m = Matcher {
            name: name.trim().to_string(),
            value: value.to_string(),
            is_regex,
            is_equal,
        };
        m.compile()?;
        Ok(m)
    }

    pub fn compile(&self) -> Result<Compiled, MatcherError> {
        if self.name.is_empty() {
            return Err(MatcherError::EmptyName(self.to_string()));
        }
        let re = if self.is_regex {
            Some(
                regex::RegexBuilder::new(&format!("^(?:{})$", self.value))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| MatcherError::Regex {
                        name: self.name.clone(),
                        value: self.value.clone(),
                        reason: e.to_string(),
                    })?,
            )
        } else {
            None
        };
        Ok(Compiled {
            m: self.clone(),
            re,
        })
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl Compiled {
    /// Whether the label value (`""` when absent) matches.
    pub fn matches_value(&self, value: &str) -> bool {
        let hit = match &self.re {
            Some(re) => re.is_match(value),
            None => self.m.value == value,
        };
        hit == self.m.is_equal
    }

    pub fn matcher(&self) -> &Matcher {
        &self.m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_like_alertmanager() {
        let m = Matcher::parse("instance=~\"db[0-9]+\"").unwrap();
        assert!(m.is_regex && m.is_equal);
        let c = m.compile().unwrap();
        assert!(c.matches_value("db12"));
        assert!(!c.matches_value("xdb1"), "anchored");
        let c = Matcher::parse("env!=prod").unwrap().compile().unwrap();
        assert!(c.matches_value("dev"));
        assert!(c.matches_value(""));
        assert!(!c.matches_value("prod"));
        assert!(Matcher::parse("novalue").is_err());
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("a=~(").is_err());
        assert_eq!(Matcher::parse("a!~b.*").unwrap().to_string(), "a!~\"b.*\"");
    }
}
