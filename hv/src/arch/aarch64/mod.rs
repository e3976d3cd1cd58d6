//! The real arch layer (aarch64-unknown-none only).
