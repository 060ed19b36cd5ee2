//! A fixed-size latency histogram.
//!
//! Keeping every sample would cost memory in proportion to the frame rate
//! (and the bench shares the machine with the relay it measures); a
//! log-linear histogram costs 30 KiB per receiver whatever the rate, and
//! its 64 sub-buckets per power of two bound the error of any percentile
//! to 1/64 (≈ 1.6 %), well below run-to-run noise.

use std::time::Duration;

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 6;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Buckets needed to cover every `u64`: values below `SUB` get one bucket
/// each, then one row of `SUB` per remaining power of two.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

/// Counts of one-way latencies in nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    // `v >> shift` is in [SUB, 2 * SUB): its low bits pick the sub-bucket.
    let sub = (v >> shift) - SUB;
    (u64::from(shift + 1) * SUB + sub) as usize
}

/// The largest value that falls into bucket `i`.
fn highest(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let low = (SUB + i % SUB) << shift;
    low.saturating_add((1u64 << shift) - 1)
}

impl LatencyHistogram {
    /// Records one latency in nanoseconds.
    pub fn record(&mut self, ns: u64) {
        if let Some(c) = self.counts.get_mut(index(ns)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The latency at or below which a fraction `q` (0..=1) of the samples
    /// fall, reported as its bucket's upper bound (never above the largest
    /// sample); `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(highest(i).min(self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bounds_contain_it() {
        let mut probes: Vec<u64> = (0..5000).collect();
        probes.extend((6..64).flat_map(|e| [1u64 << e, (1u64 << e) - 1, (1u64 << e) + 1]));
        probes.push(u64::MAX);
        for v in probes {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(highest(i) >= v, "{v} above its bucket {i}");
            if i > 0 {
                assert!(highest(i - 1) < v, "{v} also fits bucket {}", i - 1);
            }
        }
    }

    #[test]
    fn quantiles_are_within_the_bucket_resolution() {
        let mut h = LatencyHistogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [
            (0.5, 50_000_000f64),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q).map(|d| d.as_nanos() as f64).unwrap_or(0.0);
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 64.0),
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.record(10);
        b.record(1_000_000);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        // Bucket bounds are clamped to the largest sample.
        assert_eq!(a.quantile(0.34), Some(Duration::from_millis(1)));
        assert_eq!(a.quantile(0.33), Some(Duration::from_nanos(10)));
    }
}
