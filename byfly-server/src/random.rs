//! Secure randomness for ids and tokens: the thread-local CSPRNG of `rand`, seeded by the OS.

use byfly_core::SecureRandom;

/// The operating system's generator, as byfly-core's [`SecureRandom`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        rand::fill(dest);
    }
}
