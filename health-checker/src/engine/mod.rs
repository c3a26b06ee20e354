//! The verdict engine: the boot state kept in the GRUB environment, the pure
//! state machine that turns a phase's probe results into a decision, the
//! model of GRUB's choice, and the orchestration that carries a decision out
//! in a crash-safe order.

pub mod bootstate;
pub mod decide;
pub mod grub;
pub mod grubenv;
pub mod role;
pub mod run;
pub mod transitions;
mod work;

#[cfg(test)]
mod decide_tests;

pub use bootstate::{BadKey, BootState, GrubEntry};
pub use decide::{
    decide, Action, BootVerdict, Decision, EarlyPhase, EngineConfig, Fallback, Inputs, Role,
};
pub use grub::{grub_choose, GrubChoice};
pub use grubenv::GrubBootEnv;
pub use role::booted_role;
pub use run::{run_check, BootEnv, CheckOptions, CheckReport};
pub use transitions::{arm, mark_bad, mark_good, ArmError};
