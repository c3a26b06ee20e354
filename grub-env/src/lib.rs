//! Read and write the GRUB environment block, so that a power cut at any
//! instant leaves GRUB and us with either the old or the new environment.
//!
//! [`format`](mod@format) is the block format itself, byte for byte what `grub-editenv`
//! writes. [`Store`] keeps an environment crash-safely as two copies.
//!
//! # Why two copies
//!
//! `grub-editenv` truncates the file and writes it again in place: a power
//! cut in between leaves an empty or half-written environment, and with it a
//! device that no longer knows which snapshot to boot. GRUB's own `save_env`
//! overwrites the file's sectors in place. A single file can therefore never
//! be both what stock GRUB reads and safe against power loss; two copies
//! can.
//!
//! # The scheme
//!
//! * **Two complete copies**: the *primary* (`grubenv`: what stock GRUB,
//!   `grub-editenv` and every other tool read; it is always a valid
//!   environment block in the standard format) and the *backup*
//!   (`grubenv.bak` beside it). Both are ordinary environment blocks of the
//!   same size.
//! * **Sequence number and checksum** in each copy: `hc_seq` counts writes;
//!   `hc_sum` is a CRC-32 over our keys (`hc_*`) except the ones GRUB
//!   itself writes with `save_env` (`hc_tries`, `hc_fallback`, `hc_booted`)
//!   and except `hc_sum`. Keys of other tools (`saved_entry`, `next_entry`,
//!   `boot_success`, ...) are not covered either, so GRUB's in-place writes
//!   and `grub-editenv set` by other tools never invalidate a copy; the
//!   checksum catches a copy whose state keys are stale or mixed.
//! * **Writing** (userspace, [`Store::update`]), under an exclusive `flock`
//!   on the directory so concurrent writers cannot lose updates:
//!   1. read the current environment (below) and apply the change;
//!   2. stamp it with `hc_seq = old + 1` and its checksum;
//!   3. write the **primary**: temporary file `grubenv.tmp`, write, fsync,
//!      rename over `grubenv`, fsync the directory;
//!   4. write the **backup** the same way.
//!
//!   Each rename replaces a complete, synced file, so no file is ever seen
//!   half-written by a reader on a journalling file system.
//!
//!   **On FAT** (the EFI system partition, where most machines keep the
//!   environment) a copy is instead **overwritten in place**: write the
//!   whole block over the existing file, then fsync. FAT has no journal,
//!   and a rename there frees the old file's clusters and allocates new
//!   ones: the allocation table and the directory entries reach the disk in
//!   no fixed order, whatever is fsynced. A power cut during such writes
//!   was seen, in the VM test `power_cut`, to leave both copies' directory
//!   entries pointing at clusters the table had already freed: `fsck.fat`
//!   then truncates both files to nothing. Overwriting in place allocates
//!   and frees nothing and keeps each file's size, so only the block's own
//!   sectors change (as with GRUB's `save_env`). It is used when the file
//!   already has the block's size and the text ends within the first
//!   512-byte sector (our keys take well under that); the padding after it
//!   is the same in every version, so a write torn between sectors still
//!   leaves the old or the new text. Otherwise (a first write, a larger
//!   text) the copy is replaced by rename as above; a crash then can lose
//!   at most that one copy, and the other is complete.
//! * **Reading** ([`Store::load`]): GRUB is the authority on what GRUB
//!   boots, so we read what GRUB reads, by its rule and with its reader:
//!   [`grub_entries`] reads a block as GRUB 2.06's `load_env` and
//!   `grub-editenv list` do (header checked, lines read up to the first
//!   one GRUB stops at, padding and size never checked), and the copy used
//!   is the one the snippet under `grub/` loads: the primary when it loads
//!   and carries `hc_seq`, else the backup when it does, else the first
//!   that loads at all. A pair from which nothing loads is an error, never
//!   an empty environment; so is a pair whose only copy GRUB loads is
//!   damaged and carries no `hc_seq` (most likely a torn copy of ours: GRUB
//!   reads no state from it and boots the distribution's entries). The test `tests/grub_editenv_differential.rs`
//!   checks our reader against the real `grub-editenv` over damaged files.
//! * **What the checksum means**: GRUB does not check it, so it never
//!   decides which copy is read. A copy whose checksum does not match was
//!   changed by another tool (`grub-editenv set hc_...`) or damaged; like a
//!   copy that is not a well-formed block (a stray byte in the padding,
//!   bytes appended or cut off), it is reported in [`Loaded::problems`],
//!   and [`Store::repair`] rewrites both copies with the values GRUB reads
//!   (first keeping a copy it cannot reproduce as `<file>.broken-<time>`).
//!   This matters beyond tidiness: `grub-editenv set`, and GRUB's
//!   `save_env` with the same code, refuse a block whose padding is
//!   damaged, so until it is repaired GRUB cannot count attempts.
//! * **GRUB** (the snippet under `grub/`): `load_env` the primary; if that
//!   fails or leaves `hc_seq` empty, `load_env` the backup instead; when it
//!   saves its counters, it saves them into the copy it loaded.
//! * **Neither copy readable**: [`Store::recover`] keeps both as
//!   `<file>.broken-<time>` and starts a new, empty environment.
//!
//! Why the primary first: a crash before the primary's rename leaves both
//! copies old, and both readers agree on the old state; a crash after it
//! leaves the primary new and the backup old, and both readers take the
//! primary, the new state. Writing the backup first would leave a window
//! in which GRUB reads the old primary while we read the new backup.
//!
//! GRUB's own `save_env` writes the whole block in place, sector by sector.
//! Our entries stay far below 512 bytes, so they sit in the first sector and
//! a torn write of the padding sector changes nothing; sector writes are
//! atomic on the devices this targets.
//!
//! The test `tests/fault_injection.rs` stops the writer after every step,
//! and for each stop enumerates what a power cut could leave on disk (synced
//! and unsynced data, durable and lost renames, and for in-place writes
//! every mix of old and new sectors), then checks that both our reader and
//! a model of GRUB's read the old or the new environment, on a journalling
//! file system and on FAT. The VM test `power_cut` (tests/vm) cuts a real
//! guest's power while it rewrites the environment on its EFI system
//! partition.
//!
//! # The btrfs reserved-area block
//!
//! openSUSE's patched GRUB reads and writes a 512-byte block at byte
//! 256 KiB of the btrfs device (`env_block=512+1`). [`Location::Block`]
//! writes such a block in place; the backup of that pair is a file. GRUB
//! reads only the block, so a sound block is what is read, even without
//! `hc_seq`; the backup file is read only when GRUB cannot use the block.

pub mod format;
pub mod fs;
mod store;

pub use format::{grub_entries, Env, FormatError, GrubRead};
pub use fs::{Fs, Location, LockGuard, RealFs};
pub use store::{tmp_path, CopyProblem, Error, Integrity, Loaded, Source, Store};

/// What the `grubenv_parse` fuzz target checks of any bytes: parsing never
/// panics, whatever parses writes back to the same meaning, and what GRUB
/// would read (`parse_as_grub`) is written back as a well-formed block
/// holding the same entries. Its seed corpus runs in `cargo test`.
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(env) = Env::parse(data) {
        let bytes = env.to_bytes().expect("a parsed block fits its own size");
        let again = Env::parse(&bytes).expect("our output parses");
        assert_eq!(again, env);
    }
    if let Ok(read) = Env::parse_as_grub(data) {
        let bytes = read.env.to_bytes().expect("what GRUB reads fits a block");
        let again = Env::parse(&bytes).expect("the repair is well formed");
        assert_eq!(again, read.env);
    }
}
