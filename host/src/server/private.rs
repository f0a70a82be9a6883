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
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::symlink_metadata(dir)?;
        if metadata.file_type().is_symlink() {
            return Ok(());
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
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(|e| anyhow::anyhow!("cannot read the code cache {}: {e}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            anyhow::bail!(
                "the code cache {} is writable by other users (mode {:o}); its files are loaded as native code, so make it writable by this user only (chmod go-w)",
                dir.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}
