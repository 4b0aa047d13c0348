//! Hybrid logical clocks: the versions the state store gives keys (`__ts` on responses and
//! notifications) and the timestamps and fencing tokens clients send (`__ts`, `__ft`).
//!
//! Text form, as the Azure IoT Operations SDK writes and parses it:
//! `{wall clock ms since the Unix epoch:015}:{counter:05}:{node id}`. Clocks order by wall
//! time, then counter, then node id.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One hybrid logical clock reading.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Wall clock, milliseconds since the Unix epoch.
    pub ms: u64,
    pub counter: u64,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed hybrid logical clock {0:?}: expected `ms:counter:node`")]
pub struct ParseHlcError(pub String);

impl FromStr for Hlc {
    type Err = ParseHlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseHlcError(s.to_owned());
        let mut parts = s.splitn(3, ':');
        let ms = parts.next().ok_or_else(err)?;
        let counter = parts.next().ok_or_else(err)?;
        let node = parts.next().ok_or_else(err)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(counter) || node.contains(':') {
            return Err(err());
        }
        Ok(Hlc {
            ms: ms.parse().map_err(|_| err())?,
            counter: counter.parse().map_err(|_| err())?,
            node: node.to_owned(),
        })
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}:{:05}:{}", self.ms, self.counter, self.node)
    }
}

/// The state store's clock: every reading is greater than every earlier reading and every
/// timestamp observed from clients, so a key's version orders the writes to it.
#[derive(Debug)]
pub struct Clock {
    node: String,
    last_ms: u64,
    counter: u64,
}

impl Clock {
    /// A clock named `node` (must not contain `:`; the caller validates settings).
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            last_ms: 0,
            counter: 0,
        }
    }

    /// A new reading, after every earlier one.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        if wall_ms > self.last_ms {
            self.last_ms = wall_ms;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        self.reading()
    }

    /// Merge a client's timestamp (already checked not to be too far ahead) so that later
    /// readings come after it.
    pub fn observe(&mut self, remote: &Hlc) {
        if (remote.ms, remote.counter) > (self.last_ms, self.counter) {
            self.last_ms = remote.ms;
            self.counter = remote.counter;
        }
    }

    fn reading(&self) -> Hlc {
        Hlc {
            ms: self.last_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }
}

/// Milliseconds since the Unix epoch by the system clock (0 if it is set before 1970).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_matches_the_sdk() {
        let h = Hlc {
            ms: 1_700_000_000_123,
            counter: 7,
            node: "edgeplane".into(),
        };
        assert_eq!(h.to_string(), "001700000000123:00007:edgeplane");
        assert_eq!("001700000000123:00007:edgeplane".parse::<Hlc>(), Ok(h));
        assert_eq!(
            "12:3:".parse::<Hlc>().map(|h| h.node),
            Ok(String::new()),
            "an empty node id is accepted, as by the SDK"
        );
        for bad in [
            "",
            "1:2",
            "a:1:n",
            "1:-2:n",
            "1:2:n:x",
            ":1:n",
            "99999999999999999999:1:n",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clock_is_monotonic_and_follows_observed_timestamps() -> Result<(), ParseHlcError> {
        let mut c = Clock::new("n");
        let a = c.tick(100);
        let b = c.tick(100);
        let d = c.tick(50);
        assert!(a < b && b < d);
        c.observe(&"500:3:client".parse()?);
        let e = c.tick(200);
        assert_eq!((e.ms, e.counter), (500, 4));
        Ok(())
    }
}
