//! How long a portal session lasts: [`SessionLifetime`], chosen with
//! `edgeplane run --session-lifetime SECONDS` and handed to the portal in
//! [`crate::Services`]; `auth.rs` applies it to each session's expiry and cookie.

use std::str::FromStr;
use std::time::Duration;

/// How long a session lasts after sign-in: from 1 second to [`SessionLifetime::MAX_SECS`]
/// (30 days), [`SessionLifetime::DEFAULT`] (8 hours) unless chosen otherwise. Parsed from a
/// number of seconds (`--session-lifetime 28800`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime(pub(crate) Duration);

impl SessionLifetime {
    /// 8 hours: a shift.
    pub const DEFAULT: SessionLifetime = SessionLifetime(Duration::from_secs(8 * 3600));
    /// 30 days. Longer is refused: a forgotten tablet stays signed in no longer than that,
    /// and the expiry instant cannot overflow.
    pub const MAX_SECS: u64 = 30 * 24 * 3600;

    /// A lifetime of `secs` seconds, refused outside 1..=[`Self::MAX_SECS`].
    pub fn from_secs(secs: u64) -> Result<SessionLifetime, SessionLifetimeError> {
        if (1..=Self::MAX_SECS).contains(&secs) {
            Ok(SessionLifetime(Duration::from_secs(secs)))
        } else {
            Err(SessionLifetimeError::OutOfRange(secs))
        }
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for SessionLifetime {
    type Err = SessionLifetimeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let secs = text
            .trim()
            .parse()
            .map_err(|_| SessionLifetimeError::NotSeconds(text.to_owned()))?;
        SessionLifetime::from_secs(secs)
    }
}

/// A session lifetime that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionLifetimeError {
    #[error(
        "`{0}` is not a whole number of seconds; give 1 to 2592000 (30 days), \
         e.g. 28800 for the default 8 hours"
    )]
    NotSeconds(String),
    #[error(
        "a session lifetime of {0} seconds is out of range; give 1 to 2592000 (30 days), \
         e.g. 28800 for the default 8 hours"
    )]
    OutOfRange(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_outside_one_second_to_thirty_days_are_refused() {
        assert_eq!(SessionLifetime::default().as_secs(), 8 * 3600);
        assert_eq!("28800".parse(), Ok(SessionLifetime::DEFAULT));
        assert_eq!(
            "2".parse::<SessionLifetime>()
                .map(SessionLifetime::as_duration),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            "2592000"
                .parse::<SessionLifetime>()
                .map(SessionLifetime::as_secs),
            Ok(30 * 24 * 3600)
        );
        for (text, refused) in [
            ("0", SessionLifetimeError::OutOfRange(0)),
            ("2592001", SessionLifetimeError::OutOfRange(2_592_001)),
            ("8h", SessionLifetimeError::NotSeconds("8h".into())),
            ("-1", SessionLifetimeError::NotSeconds("-1".into())),
            ("", SessionLifetimeError::NotSeconds(String::new())),
        ] {
            assert_eq!(text.parse::<SessionLifetime>(), Err(refused), "{text:?}");
        }
        let message = SessionLifetime::from_secs(0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("1 to 2592000"), "{message}");
    }
}
