//! The data directory holds signing seeds, key hashes and every tenant's
//! code and data: only the user running the host may read it.

use std::path::Path;

/// Makes files the process creates from now on private (umask 077), so the
/// database's later segments and snapshots are the owner's only as well.
pub fn restrict_new_files() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// Sets `dir` and everything under it to 0700 (directories) and 0600
/// (files), for data directories created before this was done.
pub fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::symlink_metadata(dir)?;
        if metadata.file_type().is_symlink() {
            return Ok(());
        }
        // Another user's files could be given back their modes by that user.
        if metadata.uid() != rustix::process::geteuid().as_raw() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} belongs to another user (uid {})", dir.display(), metadata.uid()),
            ));
        }
        if metadata.is_dir() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            for entry in std::fs::read_dir(dir)? {
                restrict_tree(&entry?.path())?;
            }
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Creates the code cache (0700) if needed, and refuses one that others
/// may write: its artifacts are loaded as native code, so whoever can
/// write there could run code in the host.
pub fn check_code_cache(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the code cache {}: {e}", dir.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata =
            std::fs::metadata(dir).map_err(|e| anyhow::anyhow!("cannot read the code cache {}: {e}", dir.display()))?;
        let mode = metadata.mode();
        if mode & 0o022 != 0 {
            anyhow::bail!(
                "the code cache {} is writable by other users (mode {:o}); its files are loaded as native code, so make it writable by this user only (chmod go-w)",
                dir.display(),
                mode & 0o777
            );
        }
        if metadata.uid() != rustix::process::geteuid().as_raw() {
            anyhow::bail!(
                "the code cache {} belongs to another user (uid {}), who could put native code in it; use a directory of this user's",
                dir.display(),
                metadata.uid()
            );
        }
        // Whoever may write the parent may swap the directory itself,
        // unless the sticky bit stops them (as on /tmp).
        let real = dir.canonicalize()?;
        if let Some(parent) = real.parent() {
            let parent_mode = std::fs::metadata(parent)?.mode();
            if parent_mode & 0o022 != 0 && parent_mode & 0o1000 == 0 {
                anyhow::bail!(
                    "the code cache's parent {} is writable by other users (mode {:o}), who could replace the cache; move it, or chmod go-w the parent",
                    parent.display(),
                    parent_mode & 0o7777
                );
            }
        }
    }
    Ok(())
}
