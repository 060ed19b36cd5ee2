//! The subcommands, grouped by what they talk to.

pub mod cards;
pub mod identity;
pub mod relay;
pub mod serve;
pub mod talk;
