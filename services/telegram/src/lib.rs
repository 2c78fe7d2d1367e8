//! The Telegram bot: submit, follow and approve from a phone.
//!
//! * [`config`]: the bot token, the Bot API's address, the allow-list
//!   (Telegram user id → the SKYNET token it acts with).
//! * [`commands`]: what a chat message asks for (pure).
//! * [`chat`]: messages and button presses → submissions and commands sent
//!   with the user's own token (the intake and policy verify it again).
//! * `reads`: `/status`, `/jobs`, `/alerts`.
//! * [`notify`]: the durable consumer that pushes approval requests with
//!   buttons, edits them with decisions and outcomes, and relays alerts and
//!   the emergency stop; what was sent is kept in [`kv`].
//! * [`view`]: a job as a chat shows it (pure), within Telegram's limits.
//! * [`send`]: Bot API requests, retried after a 429's `retry_after`.

pub mod chat;
pub mod commands;
pub mod config;
pub mod kv;
pub mod notify;
mod reads;
pub mod send;
mod service;
pub mod view;

pub use config::Config;
pub use service::{Ctx, Deps, StartError, run};
