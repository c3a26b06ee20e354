//! The two libbtrfsutil calls the safe `libbtrfsutil` 0.7 crate does not
//! wrap: reading and setting the default subvolume.
//!
//! The 0.8 crate wraps them, but it calls the names btrfs-progs 6.3+ ships
//! (`btrfs_util_subvolume_get_default`) and does not build against Debian
//! 12's btrfs-progs 6.2, which has `btrfs_util_get_default_subvolume_fd`.
//! These are the only `unsafe` lines of the program; each call passes a file
//! descriptor borrowed for the whole call and a pointer to a local `u64`.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

use libbtrfsutil_sys as sys;

/// A libbtrfsutil failure: its own message and the `errno` it left.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {os}")]
pub struct BtrfsUtilError {
    /// libbtrfsutil's description of the step that failed.
    pub what: String,
    /// The operating system's error behind it.
    pub os: std::io::Error,
}

impl BtrfsUtilError {
    /// Capture `errno` right after the failed call.
    fn new(code: sys::btrfs_util_error::Type) -> Self {
        let os = std::io::Error::last_os_error();
        // SAFETY: btrfs_util_strerror returns NULL or a pointer to a static,
        // NUL-terminated string.
        let ptr = unsafe { sys::btrfs_util_strerror(code) };
        let what = if ptr.is_null() {
            format!("libbtrfsutil error {code}")
        } else {
            // SAFETY: non-NULL, static and NUL-terminated (see above).
            unsafe { std::ffi::CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned()
        };
        BtrfsUtilError { what, os }
    }

    /// The `errno` value, if any.
    pub fn errno(&self) -> Option<i32> {
        self.os.raw_os_error()
    }
}

/// The default subvolume ID of the filesystem holding `fd`.
pub fn default_subvolume(fd: impl AsFd) -> Result<u64, BtrfsUtilError> {
    let fd = fd.as_fd();
    let mut id: u64 = 0;
    // SAFETY: `fd` is a valid descriptor borrowed for the duration of the
    // call; `id` is a valid, writable u64.
    let code = unsafe { sys::btrfs_util_get_default_subvolume_fd(fd.as_raw_fd(), &mut id) };
    if code == sys::btrfs_util_error::BTRFS_UTIL_OK {
        Ok(id)
    } else {
        Err(BtrfsUtilError::new(code))
    }
}

/// Make subvolume `id` the default of the filesystem holding `fd`. The
/// kernel refuses it (`EROFS`) when `fd` is on a read-only mount.
pub fn set_default_subvolume(fd: impl AsFd, id: u64) -> Result<(), BtrfsUtilError> {
    let fd = fd.as_fd();
    // SAFETY: `fd` is a valid descriptor borrowed for the duration of the
    // call; `id` is passed by value.
    let code = unsafe { sys::btrfs_util_set_default_subvolume_fd(fd.as_raw_fd(), id) };
    if code == sys::btrfs_util_error::BTRFS_UTIL_OK {
        Ok(())
    } else {
        Err(BtrfsUtilError::new(code))
    }
}
