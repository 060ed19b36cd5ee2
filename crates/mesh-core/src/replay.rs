//! The sliding anti-replay window for transport nonces.
//!
//! Every transport message carries its nonce explicitly, so messages may
//! arrive in any order, twice, or after a reconnect. The window remembers
//! which of the last [`REPLAY_WINDOW`] nonces below the highest one seen have
//! already been accepted (a bitmap, as in RFC 6479 and WireGuard). A nonce
//! above the highest is new; one inside the window is new unless its bit is
//! set; one below the window is refused as too old, since nothing proves it
//! was not delivered already.
//!
//! A nonce is only *recorded* after its message decrypted: [`ReplayWindow::check`]
//! is called before decrypting and [`ReplayWindow::record`] after, so a
//! forged message can never burn a nonce.

use crate::limits::REPLAY_WINDOW;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Why a nonce was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ReplayError {
    /// This nonce was already accepted.
    #[error("duplicate nonce {0}")]
    Duplicate(u64),
    /// This nonce is further behind the newest than the window reaches.
    #[error("nonce {0} is older than the replay window")]
    TooOld(u64),
}

/// Sliding window over accepted nonces.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest nonce accepted so far, if any.
    top: Option<u64>,
    /// Bit `n % REPLAY_WINDOW` is set when nonce `n` (within the window) was
    /// accepted.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish()
    }
}

impl ReplayWindow {
    /// An empty window: every nonce is new.
    pub fn new() -> Self {
        ReplayWindow {
            top: None,
            bits: [0; WORDS],
        }
    }

    fn slot(n: u64) -> (usize, u64) {
        let i = (n % REPLAY_WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Whether `n` would be accepted. Does not change the window.
    pub fn check(&self, n: u64) -> Result<(), ReplayError> {
        let Some(top) = self.top else { return Ok(()) };
        if n > top {
            return Ok(());
        }
        if top - n >= REPLAY_WINDOW {
            return Err(ReplayError::TooOld(n));
        }
        let (w, b) = Self::slot(n);
        if self.bits[w] & b != 0 {
            Err(ReplayError::Duplicate(n))
        } else {
            Ok(())
        }
    }

    /// Records `n` as accepted. Call only after the message authenticated.
    pub fn record(&mut self, n: u64) -> Result<(), ReplayError> {
        self.check(n)?;
        match self.top {
            Some(top) if n <= top => {}
            Some(top) => {
                // Slide: forget the slots the window moves past.
                if n - top >= REPLAY_WINDOW {
                    self.bits = [0; WORDS];
                } else {
                    for m in top + 1..=n {
                        let (w, b) = Self::slot(m);
                        self.bits[w] &= !b;
                    }
                }
                self.top = Some(n);
            }
            None => {
                self.top = Some(n);
            }
        }
        let (w, b) = Self::slot(n);
        self.bits[w] |= b;
        Ok(())
    }

    /// The highest nonce accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut w = ReplayWindow::new();
        for n in [0, 1, 2, 5, 4, 3] {
            assert_eq!(w.record(n), Ok(()));
        }
        assert_eq!(w.record(4), Err(ReplayError::Duplicate(4)));
        assert_eq!(w.record(0), Err(ReplayError::Duplicate(0)));
        w.record(REPLAY_WINDOW + 10).unwrap();
        assert_eq!(w.check(10), Err(ReplayError::TooOld(10)));
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w.record(u64::MAX), Ok(()));
        assert_eq!(w.record(u64::MAX), Err(ReplayError::Duplicate(u64::MAX)));
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new();
        w.check(7).unwrap();
        w.check(7).unwrap();
        w.record(7).unwrap();
        assert!(w.check(7).is_err());
    }

    proptest! {
        /// Against a model that remembers every nonce: the window accepts a
        /// nonce iff it is new and not older than the window, and never
        /// accepts one twice.
        #[test]
        fn prop_matches_model(ops in proptest::collection::vec(0u64..20_000, 1..600)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut top: Option<u64> = None;
            for n in ops {
                let too_old = top.is_some_and(|t| n < t && t - n >= REPLAY_WINDOW);
                let expect_ok = !too_old && !seen.contains(&n);
                let got = w.record(n);
                prop_assert_eq!(got.is_ok(), expect_ok, "nonce {}", n);
                if got.is_ok() {
                    seen.insert(n);
                    top = Some(top.map_or(n, |t| t.max(n)));
                }
            }
        }

        /// Nonces delivered in any order within the window are each accepted
        /// exactly once, even when every one is delivered twice.
        #[test]
        fn prop_shuffled_with_duplicates_delivers_once(seed in any::<u64>(), n in 1usize..2000) {
            let mut order: Vec<u64> = (0..n as u64).chain(0..n as u64).collect();
            // Deterministic shuffle (xorshift) so failures reproduce.
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut w = ReplayWindow::new();
            let accepted = order.iter().filter(|&&x| w.record(x).is_ok()).count();
            prop_assert_eq!(accepted, n);
        }
    }
}
