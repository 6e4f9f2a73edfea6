//! Silences and maintenance windows, as Alertmanager has them: label matchers, `startsAt`,
//! `endsAt`, `createdBy`, `comment`. A silenced alert is neither notified (alert/) nor
//! remediated (remedy/): both ask the one [`SilenceStore`]. Silences are journaled, so they
//! survive restarts, and expire by themselves at `endsAt`.

pub mod matcher;
pub mod store;

pub use matcher::{Matcher, MatcherError};
pub use store::{
    GettableSilence, PostableSilence, Silence, SilenceError, SilenceState, SilenceStatus,
    SilenceStore,
};
