//! The SQLite journal: incidents, actions, notifications, SLO buckets, breaker state.
