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
