//! Password files: one `user:PHC` line per user, where PHC is an argon2id hash string with
//! its own random salt; blank lines and lines starting with `#` are comments. Surrounding
//! spaces of a line are ignored. So a user name is refused ([`check_user_name`]) when it
//! starts with `#`, has spaces at either end, or holds `:` or a line break: such a user could
//! be written but never found again. Plaintext passwords are never stored; verification is
//! constant-time in the hash comparison and equally slow for unknown users.

use std::collections::HashMap;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("line {line}: expected `user:hash`, as written by `edgeplane passwd`")]
    Syntax { line: usize },
    #[error("line {line}: the hash of user {user:?} is not an argon2 PHC string: {reason}")]
    BadHash {
        line: usize,
        user: String,
        reason: String,
    },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("user name {user:?} {rule}; choose another name")]
    BadUserName { user: String, rule: &'static str },
}

/// Refuse a user name the password file format cannot hold (see the module doc).
pub fn check_user_name(user: &str) -> Result<(), PasswordFileError> {
    let rule = if user.is_empty() {
        "is empty"
    } else if user.starts_with('#') {
        "starts with `#`, which marks a comment line in a password file"
    } else if user.trim() != user {
        "starts or ends with a space, which a password file line ignores"
    } else if user.contains([':', '\n', '\r']) {
        "contains `:` or a line break, which end the user name of a password file line"
    } else {
        return Ok(());
    };
    Err(PasswordFileError::BadUserName {
        user: user.to_owned(),
        rule,
    })
}

/// The `(user, hash)` entries of a password file, in file order, each hash checked to be a
/// PHC string.
pub fn entries(text: &str) -> Result<Vec<(String, String)>, PasswordFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or(PasswordFileError::Syntax { line: i + 1 })?;
        if user.is_empty() {
            return Err(PasswordFileError::Syntax { line: i + 1 });
        }
        PasswordHash::new(hash).map_err(|e| PasswordFileError::BadHash {
            line: i + 1,
            user: user.to_owned(),
            reason: e.to_string(),
        })?;
        out.push((user.to_owned(), hash.to_owned()));
    }
    Ok(out)
}

#[derive(Debug)]
pub struct PasswordFile {
    users: HashMap<String, String>,
    /// Verified against for unknown users, so their refusal takes as long as a wrong password.
    decoy: String,
}

impl PasswordFile {
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let users: HashMap<String, String> = entries(text)?.into_iter().collect();
        let decoy = hash_password(b"decoy password for unknown users")?;
        Ok(Self { users, decoy })
    }

    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let ok = PasswordHash::new(hash)
            .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok());
        ok && known
    }
}

/// Hash a password with argon2id and a fresh random salt, as a PHC string.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordFileError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordFileError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_and_refuses() -> Result<(), PasswordFileError> {
        let line = format!("alice:{}\n# comment\n", hash_password(b"s3cret")?);
        let file = PasswordFile::parse(&line)?;
        assert!(file.verify("alice", b"s3cret"));
        assert!(!file.verify("alice", b"wrong"));
        assert!(!file.verify("bob", b"s3cret"));
        assert!(
            !line.contains("s3cret"),
            "the file never holds the password"
        );
        assert!(matches!(
            PasswordFile::parse("alice"),
            Err(PasswordFileError::Syntax { line: 1 })
        ));
        assert!(matches!(
            PasswordFile::parse("alice:plain"),
            Err(PasswordFileError::BadHash { .. })
        ));
        Ok(())
    }

    #[test]
    fn names_the_file_cannot_hold_are_refused() {
        for good in ["alice", "+", "*", "?", "[a-z]", "a]", "a/b", "a#", "a b"] {
            assert!(check_user_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "#", "#admin", " bob", "bob ", "a:b", "a\nb"] {
            assert!(
                matches!(
                    check_user_name(bad),
                    Err(PasswordFileError::BadUserName { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
