//! Compiled components, kept so that a restart or a second version of the
//! same bytes does not compile again.
//!
//! [`CodeCache`] is the seam; an artifact is keyed by the component's
//! SHA-256 and the engine's compatibility hash, so only an engine that would
//! have produced the same code reuses it. [`DirCodeCache`] keeps them as
//! files in one directory. The compile child writes the file at
//! [`CodeCache::artifact_path`]; loading checks who wrote it.

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept, and how they come back.
pub trait CodeCache: Send + Sync {
    /// Where the compile of `sha256` writes its artifact.
    fn artifact_path(&self, sha256: &str) -> PathBuf;
    /// Whether an artifact of `sha256` is stored (not whether it is usable).
    fn contains(&self, sha256: &str) -> bool;
    /// The compiled component of `sha256`, if a usable one this host may
    /// trust is stored.
    fn load(&self, engine: &Engine, sha256: &str) -> Option<Component>;
    /// Drops an unusable artifact, so the next prepare compiles again.
    fn discard(&self, sha256: &str);
    /// Forgets `sha256` once no version uses it; a cache shared with other
    /// hosts (not the host's own) keeps it for them.
    fn forget(&self, sha256: &str);
}

/// Compiled components shared by the nodes of a cluster, in front of which
/// each node keeps its own [`CodeCache`]: the first node that needs an
/// artifact compiles it under a cluster-wide lock and publishes it, every
/// other node fetches it instead of compiling.
#[async_trait::async_trait]
pub trait SharedCode: Send + Sync {
    /// Fetches the published artifact of `sha256` into `path`; false if
    /// none is published (or it could not be fetched).
    async fn fetch(&self, sha256: &str, path: &Path) -> bool;
    /// Holds the cluster-wide right to compile `sha256` until dropped; waits
    /// while another node holds it. `None` when the lock cannot be had (the
    /// store is unreachable): compiling anyway only costs time.
    async fn lock(&self, sha256: &str) -> Option<Box<dyn Send + Sync>>;
    /// Publishes the artifact of `sha256` at `path` for the other nodes.
    async fn publish(&self, sha256: &str, path: &Path);
    /// Removes the published artifact of `sha256`, which no version uses
    /// any more: what an account deleted does not stay in the shared store.
    async fn forget(&self, sha256: &str);
}

/// Hex of `engine`'s compatibility hash: artifacts of one engine are not
/// loaded by another.
pub fn compat_of(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// One file per artifact, `{sha256}-{compat}.cwasm`, in a directory.
pub struct DirCodeCache {
    dir: PathBuf,
    /// Hex of the engine's compatibility hash.
    compat: String,
    /// Whether this host alone uses the directory (and may delete from it).
    own: bool,
}

impl DirCodeCache {
    /// The cache in `dir` (created) for artifacts of `engine`; `own` when no
    /// other host shares the directory.
    pub fn open(dir: &Path, engine: &Engine, own: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            compat: compat_of(engine),
            own,
        })
    }
}

impl CodeCache for DirCodeCache {
    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    fn contains(&self, sha256: &str) -> bool {
        self.artifact_path(sha256).exists()
    }

    #[allow(unsafe_code)]
    fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256);
        if !path.exists() {
            return None;
        }
        if !super::compile::artifact_is_ours(&path) {
            tracing::warn!(path = %path.display(), "ignoring a cached component another user could have written");
            return None;
        }
        // SAFETY: the file was written by the host's own compile child
        // (`stratus compile-component`, `compile::compile_to_file`) into the
        // host's code cache, and its name carries this engine's compatibility
        // hash; wasmtime re-checks the compatibility header on load as well.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(%err, path = %path.display(), "ignoring an unusable cached component");
                None
            }
        }
    }

    fn discard(&self, sha256: &str) {
        let _ = std::fs::remove_file(self.artifact_path(sha256));
    }

    fn forget(&self, sha256: &str) {
        if self.own {
            self.discard(sha256);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_keyed_by_engine_and_only_the_owner_deletes_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::default();
        let sha = "ab".repeat(32);
        let shared = DirCodeCache::open(dir.path(), &engine, false).unwrap_or_else(|e| panic!("{e}"));
        let path = shared.artifact_path(&sha);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(name.starts_with(&sha) && name.contains(&shared.compat), "{name}");
        std::fs::write(&path, b"not an artifact").unwrap_or_else(|e| panic!("{e}"));
        assert!(shared.contains(&sha));
        // Garbage where an artifact should be is unusable, not a crash.
        assert!(shared.load(&engine, &sha).is_none());
        shared.forget(&sha);
        assert!(
            shared.contains(&sha),
            "a shared cache keeps artifacts for the other hosts"
        );
        let own = DirCodeCache::open(dir.path(), &engine, true).unwrap_or_else(|e| panic!("{e}"));
        own.forget(&sha);
        assert!(!own.contains(&sha));
    }
}
