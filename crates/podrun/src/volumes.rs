//! The kubelet's volume work on the host: files with their modes and owners, a shared
//! directory or tmpfs for `emptyDir`, and the claim's podman volume.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::podman::Podman;
use crate::Error;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn chown(path: &Path, gid: Option<i64>) -> Result<(), Error> {
    let gid = gid
        .map(|g| u32::try_from(g).map_err(|_| Error::Invalid(format!("fsGroup {g}"))))
        .transpose()?;
    std::os::unix::fs::lchown(path, Some(0), gid).map_err(io(format!("chown {}", path.display())))
}

fn chmod(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}

const SETGID: u32 = 0o2000;

/// Writes a ConfigMap/Secret/projected volume into `dir` as the kubelet's atomic writer does:
/// the files in a timestamped directory, `..data` pointing at it, and one symlink per
/// top-level name through `..data`. With an `fs_group`, every file and directory belongs to
/// that group and gets group read (and search, setgid for directories), as the kubelet's
/// ownership change for a read-only volume does.
pub(crate) fn write_files(
    dir: &Path,
    files: &[(String, Vec<u8>, u32)],
    fs_group: Option<i64>,
) -> Result<(), Error> {
    let data = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir_all(&data).map_err(io(format!("mkdir {}", data.display())))?;
    let group_bits = |m: u32, is_dir: bool| match (fs_group, is_dir) {
        (None, _) => m,
        (Some(_), false) => m | 0o440,
        (Some(_), true) => m | 0o550 | SETGID,
    };
    let mut tops = Vec::new();
    for (path, bytes, mode) in files {
        let target = data.join(path);
        let mut parent = target.parent().map(Path::to_owned);
        std::fs::create_dir_all(parent.as_ref().unwrap_or(&data))
            .map_err(io(format!("mkdir for {path}")))?;
        std::fs::write(&target, bytes).map_err(io(format!("write {path}")))?;
        chown(&target, fs_group)?;
        chmod(&target, group_bits(*mode, false))?;
        while let Some(p) = parent.take() {
            if p == data {
                break;
            }
            chown(&p, fs_group)?;
            chmod(&p, group_bits(0o755, true))?;
            parent = p.parent().map(Path::to_owned);
        }
        let top = path.split('/').next().unwrap_or(path).to_owned();
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    chown(&data, fs_group)?;
    chmod(&data, group_bits(0o755, true))?;
    let name = data.file_name().expect("a timestamped name").to_owned();
    symlink(&name, dir.join("..data")).map_err(io("symlink ..data"))?;
    for top in tops {
        symlink(Path::new("..data").join(&top), dir.join(&top))
            .map_err(io(format!("symlink {top}")))?;
    }
    chown(dir, fs_group)?;
    // The volume's root: world-traversable, like the kubelet's tmpfs.
    chmod(dir, group_bits(0o1777, true))
}

/// An `emptyDir`: a directory anyone in the pod may write (0777, and the fsGroup's with
/// setgid), on a tmpfs of `memory` bytes when asked for. Returns whether it mounted a tmpfs.
pub(crate) fn empty_dir(
    dir: &Path,
    memory: Option<u64>,
    fs_group: Option<i64>,
) -> Result<bool, Error> {
    std::fs::create_dir_all(dir).map_err(io(format!("mkdir {}", dir.display())))?;
    if let Some(bytes) = memory {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0777,nosuid,nodev"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .map_err(io("mount tmpfs"))?;
        if !status.success() {
            return Err(Error::Invalid(format!(
                "mount -t tmpfs on {} failed ({status}): the runner needs root",
                dir.display()
            )));
        }
    }
    chown(dir, fs_group)?;
    chmod(
        dir,
        if fs_group.is_some() {
            0o777 | SETGID
        } else {
            0o777
        },
    )?;
    Ok(memory.is_some())
}

/// Unmounts a tmpfs `empty_dir` mounted.
pub(crate) fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// The claim: a named podman volume (created unless it exists), its root given to the
/// `fs_group` the way the kubelet does for a fresh volume (`OnRootMismatch`: only when the root
/// does not already have that group).
pub(crate) fn claim(podman: &Podman, name: &str, fs_group: Option<i64>) -> Result<PathBuf, Error> {
    if podman.status(["volume", "exists", name])?.1.status.code() != Some(0) {
        podman.run(["volume", "create", "--label", "io.georep.podrun=1", name])?;
    }
    let mountpoint = podman.run(["volume", "inspect", "--format", "{{.Mountpoint}}", name])?;
    let root = PathBuf::from(mountpoint.trim());
    if let Some(g) = fs_group {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&root).map_err(io(format!("stat {}", root.display())))?;
        let want = 0o770 | SETGID;
        if i64::from(meta.gid()) != g || meta.mode() & want != want {
            chown(&root, Some(g))?;
            chmod(&root, (meta.mode() & 0o7777) | want)?;
        }
    }
    Ok(root)
}
