//! The silences: held in memory for matching, journaled on every change, loaded at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::matcher::{Compiled, Matcher, MatcherError};
use crate::common::time::{now_ms, rfc3339_ms};
use crate::journal::Journal;

/// At most this many silences are kept (expired ones included, until they are pruned).
pub const MAX_SILENCES: usize = 10_000;
/// Expired silences stay listed this long (Alertmanager keeps them 5 days; medic one).
const EXPIRED_KEEP_MS: i64 = 24 * 3_600_000;

/// A silence as created through the API (Alertmanager's `postableSilence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostableSilence {
    /// Set to update an existing silence.
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// `active`, `pending` (not started yet) or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Active,
    Pending,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceStatus {
    pub state: SilenceState,
}

/// A silence as listed (Alertmanager's `gettableSilence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableSilence {
    pub id: String,
    pub status: SilenceStatus,
    pub updated_at: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub updated_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_ms {
            SilenceState::Expired
        } else if now_ms < self.starts_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    pub fn gettable(&self, now_ms: i64) -> GettableSilence {
        GettableSilence {
            id: self.id.clone(),
            status: SilenceStatus {
                state: self.state(now_ms),
            },
            updated_at: rfc3339_ms(self.updated_ms),
            matchers: self.matchers.clone(),
            starts_at: rfc3339_ms(self.starts_ms),
            ends_at: rfc3339_ms(self.ends_ms),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Matcher(#[from] MatcherError),
    #[error("invalid silence: {0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} is already expired")]
    AlreadyExpired(String),
    #[error("too many silences ({MAX_SILENCES}); expire some first")]
    Full,
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

struct Entry {
    silence: Silence,
    compiled: Vec<Compiled>,
}

/// Every silence; shared by the planner, the dispatcher and the API.
pub struct SilenceStore {
    entries: Mutex<BTreeMap<String, Entry>>,
    journal: Option<Mutex<Journal>>,
}

impl std::fmt::Debug for SilenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilenceStore").finish_non_exhaustive()
    }
}

/// Parses RFC 3339 (`Z` or a `±hh:mm` offset, optional fraction) to ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64, SilenceError> {
    let bad = || SilenceError::Invalid(format!("invalid time {s:?}: expected RFC 3339"));
    let s = s.trim();
    let (base, offset_ms) = if let Some(b) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        (b.to_string(), 0)
    } else if s.len() > 6 && matches!(s.as_bytes()[s.len() - 6], b'+' | b'-') {
        let (b, off) = s.split_at(s.len() - 6);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (b.to_string(), sign * (h * 3_600_000 + m * 60_000))
    } else {
        return Err(bad());
    };
    let t = humantime::parse_rfc3339_weak(&base).map_err(|_| bad())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_millis() as i64;
    Ok(ms - offset_ms)
}

/// A random version-4 UUID, as Alertmanager's silence ids are.
fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // no /dev/urandom: time and address bits still make it unique within this process
        let n = now_ms() as u128 ^ ((&b as *const _ as usize as u128) << 64);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl SilenceStore {
    /// An empty store that journals nothing (tests, `medic check`).
    pub fn in_memory() -> Arc<SilenceStore> {
        Arc::new(SilenceStore {
            entries: Mutex::new(BTreeMap::new()),
            journal: None,
        })
    }

    /// Loads the journaled silences (those expired for more than a day are dropped).
    pub fn load(journal: Journal) -> Result<Arc<SilenceStore>, SilenceError> {
        let now = now_ms();
        journal.silences_prune(now - EXPIRED_KEEP_MS)?;
        let mut entries = BTreeMap::new();
        for body in journal.silences_all()? {
            match serde_json::from_str::<Silence>(&body) {
                Ok(s) => {
                    let compiled = s
                        .matchers
                        .iter()
                        .map(Matcher::compile)
                        .collect::<Result<Vec<_>, _>>();
                    match compiled {
                        Ok(compiled) => {
                            entries.insert(
                                s.id.clone(),
                                Entry {
                                    silence: s,
                                    compiled,
                                },
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "journal: skipping a silence"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "journal: skipping an unreadable silence"),
            }
        }
        Ok(Arc::new(SilenceStore {
            entries: Mutex::new(entries),
            journal: Some(Mutex::new(journal)),
        }))
    }

    fn persist(&self, s: &Silence) -> Result<(), SilenceError> {
        if let Some(j) = &self.journal {
            let body =
                serde_json::to_string(s).map_err(|e| SilenceError::Invalid(e.to_string()))?;
            j.lock()
                .unwrap_or_else(|e| e.into_inner())
                .silence_put(&s.id, &body, s.ends_ms)?;
        }
        Ok(())
    }

    /// Creates a silence, or updates the one `p.id` names; returns its id.
    pub fn upsert(&self, p: PostableSilence) -> Result<String, SilenceError> {
        let now = now_ms();
        if p.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "at least one matcher is needed".into(),
            ));
        }
        let compiled = p
            .matchers
            .iter()
            .map(Matcher::compile)
            .collect::<Result<Vec<_>, _>>()?;
        if compiled.iter().all(|c| c.matches_value("")) {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string (it would silence everything)"
                    .into(),
            ));
        }
        let starts_ms = parse_time(&p.starts_at)?;
        let ends_ms = parse_time(&p.ends_at)?;
        if ends_ms <= starts_ms {
            return Err(SilenceError::Invalid(
                "endsAt must be after startsAt".into(),
            ));
        }
        if ends_ms <= now {
            return Err(SilenceError::Invalid("endsAt is in the past".into()));
        }
        if p.created_by.trim().is_empty() {
            return Err(SilenceError::Invalid("createdBy is empty".into()));
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = match &p.id {
            Some(id) if !id.is_empty() => {
                let old = entries
                    .get(id)
                    .ok_or_else(|| SilenceError::NotFound(id.clone()))?;
                if old.silence.state(now) == SilenceState::Expired {
                    return Err(SilenceError::AlreadyExpired(id.clone()));
                }
                id.clone()
            }
            _ => {
                if entries.len() >= MAX_SILENCES {
                    entries.retain(|_, e| now - e.silence.ends_ms < EXPIRED_KEEP_MS);
                    if entries.len() >= MAX_SILENCES {
                        return Err(SilenceError::Full);
                    }
                }
                new_id()
            }
        };
        let s = Silence {
            id: id.clone(),
            matchers: p.matchers,
            starts_ms,
            ends_ms,
            updated_ms: now,
            created_by: p.created_by,
            comment: p.comment,
        };
        self.persist(&s)?;
        entries.insert(
            id.clone(),
            Entry {
                silence: s,
                compiled,
            },
        );
        Ok(id)
    }

    /// Ends a silence now.
    pub fn expire(&self, id: &str) -> Result<(), SilenceError> {
        let now = now_ms();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if e.silence.state(now) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired(id.to_string()));
        }
        let mut s = e.silence.clone();
        s.ends_ms = now;
        s.starts_ms = s.starts_ms.min(now);
        s.updated_ms = now;
        self.persist(&s)?;
        e.silence = s;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<GettableSilence> {
        let now = now_ms();
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|e| e.silence.gettable(now))
    }

    /// Every silence (active, pending, recently expired), newest first.
    pub fn list(&self) -> Vec<GettableSilence> {
        let now = now_ms();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<&Silence> = entries.values().map(|e| &e.silence).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.updated_ms));
        v.into_iter().map(|s| s.gettable(now)).collect()
    }

    /// The id of an active silence matching these labels, if any.
    pub fn silenced_by<'a>(
        &self,
        labels: impl Fn(&str) -> Option<&'a str>,
        now_ms: i64,
    ) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .values()
            .find(|e| {
                e.silence.state(now_ms) == SilenceState::Active
                    && e.compiled
                        .iter()
                        .all(|c| c.matches_value(labels(&c.matcher().name).unwrap_or("")))
            })
            .map(|e| e.silence.id.clone())
    }

    /// The number of active silences.
    pub fn active(&self) -> usize {
        let now = now_ms();
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.silence.state(now) == SilenceState::Active)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postable(matchers: &[&str], starts: i64, ends: i64) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts_at: rfc3339_ms(starts),
            ends_at: rfc3339_ms(ends),
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn matches_expires_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let now = now_ms();
        let store = SilenceStore::load(Journal::open(&path).unwrap()).unwrap();
        let id = store
            .upsert(postable(
                &["alertname=Down", "instance=~db.*"],
                now - 1000,
                now + 60_000,
            ))
            .unwrap();
        let labels = |k: &str| match k {
            "alertname" => Some("Down"),
            "instance" => Some("db1"),
            _ => None,
        };
        assert_eq!(store.silenced_by(labels, now).as_deref(), Some(id.as_str()));
        assert_eq!(store.silenced_by(labels, now + 60_000), None, "expires");
        assert_eq!(store.silenced_by(|_| None, now), None);
        // pending: not yet
        store
            .upsert(postable(&["alertname=Later"], now + 30_000, now + 60_000))
            .unwrap();
        assert_eq!(store.silenced_by(|_| Some("Later"), now), None);
        drop(store);
        let store = SilenceStore::load(Journal::open(&path).unwrap()).unwrap();
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.silenced_by(labels, now).as_deref(), Some(id.as_str()));
        store.expire(&id).unwrap();
        assert!(matches!(
            store.expire(&id),
            Err(SilenceError::AlreadyExpired(_))
        ));
        assert_eq!(store.silenced_by(labels, now_ms()), None);
        assert_eq!(store.get(&id).unwrap().status.state, SilenceState::Expired);
        // bad input
        assert!(store.upsert(postable(&["a=~.*"], now, now + 1000)).is_err());
        assert!(store.upsert(postable(&["a=b"], now + 1000, now)).is_err());
        assert!(
            parse_time("2026-01-02T03:04:05+01:00").unwrap() + 3_600_000
                == parse_time("2026-01-02T03:04:05Z").unwrap()
        );
    }
}
