//! Async SDK of the ByFly Payment Center API (work in progress).
//!
//! This crate will own typed calls for every public, token and admin endpoint of `spec/API.md`,
//! returning the wire types of `byfly-core` (so client and server cannot drift), typed errors,
//! `wait_for_payment`, and webhook verification for receivers.
