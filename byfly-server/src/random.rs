//! Secure randomness for ids and tokens: the thread-local CSPRNG of `rand`, seeded by the OS.

use byfly_core::SecureRandom;

/// A new webhook event id (byfly-core's, from the OS generator).
pub fn event_id() -> byfly_core::ids::EventId {
    byfly_core::ids::EventId::generate(&mut OsRandom)
}

/// A new refund request id (byfly-core's shape, from the OS generator).
pub fn refund_id() -> String {
    byfly_core::ids::refund_id(&mut OsRandom)
}

/// The operating system's generator, as byfly-core's [`SecureRandom`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        rand::fill(dest);
    }
}
