//! Safe file output: atomic writes (temporary file, then rename) and output-folder checks.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn write_err(path: &Path, reason: std::io::Error) -> Error {
    Error::Write {
        path: PathBuf::from(path),
        reason,
    }
}

/// A temporary name next to `path`, unique to this process and file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes through a temporary file in the same folder and renames it over `path`,
/// so a killed run never leaves a torn file behind.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        // A single-file output (a plot, a grid) may name a folder that does not exist yet.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::File::create(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(path, e));
    }
    Ok(())
}

/// Lets `write` fill a temporary path (for encoders that want a file name), then renames
/// it over `path`.
pub fn write_atomic_via(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        write_err(path, e)
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Makes sure `dir` exists and may be written: refuses a non-empty folder unless `force`.
/// Returns the folder's lock, held until the run ends: a second run writing to the same
/// folder at the same time fails instead of mixing its files in.
pub fn prepare_output_dir(dir: &Path, force: bool) -> Result<OutputLock> {
    let lock = dir.join(LOCK_NAME);
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(Error::NotAFolder(PathBuf::from(dir))),
        Ok(_) => {
            if lock.exists() && !remove_stale(&lock) {
                return Err(locked(dir, &lock));
            }
            let mut entries = fs::read_dir(dir).map_err(|e| write_err(dir, e))?;
            if entries.next().is_some() && !force {
                return Err(Error::OutputNotEmpty(PathBuf::from(dir)));
            }
        }
        Err(_) => {}
    }
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => locked(dir, &lock),
            _ => write_err(&lock, e),
        })?;
    let _ = writeln!(file, "{}", std::process::id());
    Ok(OutputLock(lock))
}

/// Removes `lock` when the run that wrote it is gone (killed before it could remove it);
/// true when it was stale. Where process ids cannot be checked (no `/proc`), a lock is kept.
fn remove_stale(lock: &Path) -> bool {
    let pid = fs::read_to_string(lock).unwrap_or_default();
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return false;
    };
    let proc_fs = Path::new("/proc/self").exists();
    let alive = Path::new("/proc").join(pid.to_string()).exists();
    proc_fs && !alive && pid != std::process::id() && fs::remove_file(lock).is_ok()
}

/// The lock file a run keeps in its output folder while it writes there.
pub const LOCK_NAME: &str = ".diffuse-lock";

/// An output folder's lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct OutputLock(PathBuf);

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn locked(dir: &Path, lock: &Path) -> Error {
    let pid = fs::read_to_string(lock).unwrap_or_default();
    Error::Write {
        path: PathBuf::from(dir),
        reason: std::io::Error::other(format!(
            "another diffuse run (process {}) is writing there; if none is, remove {}",
            pid.trim(),
            lock.display()
        )),
    }
}

/// Creates `dir` (and parents) if needed.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))
}

/// Checks, before any work, that a single output file can be written at `path`: not a
/// folder, not an existing file unless `force`, and its folder creatable and writable.
pub fn check_overwrite(path: &Path, force: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Write {
            path: PathBuf::from(path),
            reason: std::io::Error::other("it is a folder; give a file name"),
        });
    }
    if path.exists() && !force {
        return Err(Error::Exists(PathBuf::from(path)));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir(parent)?;
    // A temporary file proves the folder is writable now, not after hours of work.
    let probe = temp_path(path);
    fs::File::create(&probe).map_err(|e| write_err(path, e))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Removes the files an earlier run of the same command left in `dir` (`force` only): the
/// names `owned` says are a run's; the user's other files stay.
pub fn remove_owned(dir: &Path, owned: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !owned(&name) {
            continue;
        }
        let path = e.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|reason| Error::Write { path, reason })?;
    }
    Ok(())
}
