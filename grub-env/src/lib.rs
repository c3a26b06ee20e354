//! The GRUB environment block (placeholder while the crate is written).
