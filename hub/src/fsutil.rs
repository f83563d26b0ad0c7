//! Small file-system helpers for state that must survive a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new contents, never a mix: write a temp file, fsync it, rename it over, and
/// fsync the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a secret: the file is readable and writable by its
/// owner only (0600) from its first byte, and owned like its directory, so a
/// file root writes with `sudo hark …` stays readable by the hub's user.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)?;
    own_like_parent(path);
    Ok(())
}

/// When root made `path`, hands it to the owner of its directory (the state
/// dir belongs to the `hark` user; root running the CLI must not leave files
/// there that the hub cannot read). Anyone else's files are theirs already.
pub fn own_like_parent(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Some(parent) = path.parent().and_then(|d| fs::metadata(d).ok()) else {
        return;
    };
    if let Err(e) = std::os::unix::fs::chown(path, Some(parent.uid()), Some(parent.gid())) {
        tracing::warn!(
            "cannot hand {} to the state dir's owner: {e}",
            path.display()
        );
    }
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        if mode & 0o077 == 0 {
            // A temp file left by a crash keeps its old mode; a secret must not.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and parents) readable only by the hub's user and group.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("hark-fsutil-{}", std::process::id()));
        create_private_dir(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"first, and longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
