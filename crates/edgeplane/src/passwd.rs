//! `edgeplane passwd FILE USER`: add or change a user in a password Secret manifest (kind
//! `Secret`, entry `passwords`, one `user:argon2id-hash` line per user), reading the password
//! from standard input. The plaintext is never written, logged or echoed. User names the
//! file format cannot hold (starting with `#`, which marks a comment, or with spaces at
//! either end, `:` or a line break) are refused before anything is read or written. The
//! file is rewritten from its users: comment lines in its `passwords` entry are not kept.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{anyhow, Context as _};
use edgeplane_broker::auth::{check_user_name, hash_password, password_entries};

use crate::listeners::PASSWORDS_KEY;

pub fn run(file: &Path, secret: &str, user: &str) -> anyhow::Result<()> {
    check_user_name(user)?;
    let mut users = existing(file, secret)?;
    eprintln!("password for {user} (read from standard input, not echoed by this command):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("empty password refused");
    }
    users.insert(user.to_owned(), hash_password(password.as_bytes())?);
    let lines: String = users
        .iter()
        .map(|(u, h)| format!("    {u}:{h}\n"))
        .collect();
    let text = format!(
        "# Written by `edgeplane passwd`: argon2id hashes, never plaintext.\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret}\nstringData:\n  {PASSWORDS_KEY}: |\n{lines}"
    );
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    eprintln!("{user} saved in Secret/{secret} ({})", file.display());
    Ok(())
}

/// Users already in the file, if it exists.
fn existing(file: &Path, secret: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(BTreeMap::new());
    };
    let name = file.display().to_string();
    let config = edgeplane_config::load_str(&name, &text).map_err(|e| anyhow!("{e}"))?;
    let data = config
        .secrets
        .get(secret)
        .and_then(|s| s.data.get(PASSWORDS_KEY))
        .ok_or_else(|| {
            anyhow!("{name} exists but holds no Secret/{secret} with a {PASSWORDS_KEY:?} entry")
        })?;
    let text = std::str::from_utf8(data)
        .map_err(|_| anyhow!("{name}: Secret/{secret} {PASSWORDS_KEY} is not UTF-8"))?;
    let users = password_entries(text)
        .map_err(|e| anyhow!("{name}: Secret/{secret} {PASSWORDS_KEY}: {e}"))?;
    Ok(users.into_iter().collect())
}
