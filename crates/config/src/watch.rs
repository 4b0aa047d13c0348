//! Following a configuration folder without parsing it on every look.
//!
//! The binary re-reads its folder every few seconds (listeners' Secrets and policies,
//! dataflows, devices and assets, the log level). Parsing and validating it costs time in
//! proportion to its size: tens of milliseconds for an Asset of 10,000 data points, taken by
//! each of those loops on the broker's runtime, which stalled every connection meanwhile.
//! [`FolderWatch`] looks at the folder's manifests first (name, size, modification time,
//! inode: a rename over a file, as editors and the portal write, changes the inode) and loads
//! it only when one of them changed, was added or went.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{load_dir, Config, ConfigErrors};

/// What identifies one version of a manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// A configuration folder and what it held at the last load.
#[derive(Debug)]
pub struct FolderWatch {
    dir: PathBuf,
    seen: Option<Vec<Stamp>>,
}

impl FolderWatch {
    /// Follow `dir`; the first [`FolderWatch::load_if_changed`] always loads.
    pub fn new(dir: &Path) -> Self {
        FolderWatch {
            dir: dir.to_path_buf(),
            seen: None,
        }
    }

    /// Treat the folder as already loaded as it is now (the caller just loaded it).
    pub fn mark_loaded(&mut self) {
        self.seen = stamps(&self.dir);
    }

    /// Load the folder again if a manifest changed since the last load; `None` if none did.
    /// A folder that cannot be listed is loaded every time, so its error is reported.
    pub fn load_if_changed(&mut self) -> Option<Result<Config, ConfigErrors>> {
        let now = stamps(&self.dir);
        if now.is_some() && now == self.seen {
            return None;
        }
        let loaded = load_dir(&self.dir);
        // Stamped before loading: a change made during the load is seen next time.
        self.seen = now;
        Some(loaded)
    }
}

/// The manifests directly inside `dir`, sorted; `None` if it cannot be listed.
fn stamps(dir: &Path) -> Option<Vec<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<Stamp> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| crate::load::is_manifest(path))
        .filter_map(|path| {
            let meta = fs::metadata(&path).ok()?;
            Some(Stamp {
                len: meta.len(),
                modified: meta.modified().ok(),
                inode: meta.ino(),
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: a}\nspec:\n  ports:\n  - port: 1883\n";

    #[test]
    fn loads_only_after_a_change() {
        let dir = std::env::temp_dir().join(format!("edgeplane-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("folder");
        fs::write(dir.join("a.yaml"), LISTENER).expect("write");
        let mut watch = FolderWatch::new(&dir);
        assert!(
            matches!(watch.load_if_changed(), Some(Ok(_))),
            "the first look loads"
        );
        assert!(watch.load_if_changed().is_none(), "nothing changed");

        // Same size, new content, written through a rename as editors do.
        let text = LISTENER.replace("1883", "1884");
        fs::write(dir.join("a.tmp"), &text).expect("write");
        fs::rename(dir.join("a.tmp"), dir.join("a.yaml")).expect("rename");
        let config = watch.load_if_changed().expect("changed").expect("valid");
        assert_eq!(config.listeners.len(), 1);
        assert!(watch.load_if_changed().is_none());

        fs::write(dir.join("b.yaml"), "not: [valid").expect("write");
        assert!(
            matches!(watch.load_if_changed(), Some(Err(_))),
            "an added file loads"
        );
        assert!(
            watch.load_if_changed().is_none(),
            "an invalid folder is not reparsed either"
        );
        fs::remove_file(dir.join("b.yaml")).expect("remove");
        assert!(
            matches!(watch.load_if_changed(), Some(Ok(_))),
            "a removed file loads"
        );
        fs::write(dir.join("notes.txt"), "ignored").expect("write");
        assert!(
            watch.load_if_changed().is_none(),
            "files that are not manifests do not count"
        );

        watch.mark_loaded();
        assert!(watch.load_if_changed().is_none());
        fs::remove_dir_all(&dir).expect("clean up");
        assert!(
            matches!(watch.load_if_changed(), Some(Err(_))),
            "a vanished folder reports"
        );
    }
}
