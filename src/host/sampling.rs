//! 1-in-N packet sampling as an sFlow agent does it (sflow_version_5.txt, "Packet Flow
//! Sampling"): a countdown of frames to skip, redrawn at random after each sample so that the
//! samples are not synchronized with periodic traffic, with a mean of N. The random numbers come
//! from a seeded generator, so a run repeats exactly.

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast and good enough to draw skip counts;
/// a seed gives one reproducible sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0), by the multiply-shift reduction: the bias is below
    /// 2^-32 for the bounds used here.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// One sampler (one per port): which frames to sample, and the counts an sFlow flow sample
/// reports about its sampling.
#[derive(Debug, Clone)]
pub struct Sampler {
    rate: u32,
    rng: SplitMix64,
    /// Frames still to pass before the next sample; the next frame is sampled when it is 1.
    skip: u64,
    /// Frames this sampler has seen (sFlow's `sample_pool`, which wraps at 2^32 on the wire).
    pool: u64,
    /// Samples taken that could not be exported (sFlow's `drops`).
    drops: u64,
}

impl Sampler {
    /// A sampler of 1 in `rate` frames (`rate` ≥ 1; 1 samples every frame).
    pub fn new(rate: u32, seed: u64) -> Self {
        let mut sampler = Sampler {
            rate: rate.max(1),
            rng: SplitMix64::new(seed),
            skip: 0,
            pool: 0,
            drops: 0,
        };
        sampler.skip = sampler.draw_skip();
        sampler
    }

    /// Uniform in 1..=2N-1, whose mean is N.
    fn draw_skip(&mut self) -> u64 {
        let n = u64::from(self.rate);
        1 + self.rng.below(2 * n - 1)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Counts one frame; true when it is to be sampled.
    pub fn take(&mut self) -> bool {
        self.pool += 1;
        self.skip -= 1;
        if self.skip == 0 {
            self.skip = self.draw_skip();
            true
        } else {
            false
        }
    }

    pub fn pool(&self) -> u64 {
        self.pool
    }

    /// A sample taken by [`take`](Self::take) was lost before export.
    pub fn record_drop(&mut self) {
        self.drops += 1;
    }

    pub fn drops(&self) -> u64 {
        self.drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_one_samples_every_frame() {
        let mut s = Sampler::new(1, 7);
        assert!((0..1000).all(|_| s.take()));
        assert_eq!(s.pool(), 1000);
    }

    #[test]
    fn skips_are_within_one_and_twice_the_rate_and_average_the_rate() {
        let rate = 50;
        let mut s = Sampler::new(rate, 42);
        let mut gaps = Vec::new();
        let mut since = 0u64;
        for _ in 0..500_000 {
            since += 1;
            if s.take() {
                gaps.push(since);
                since = 0;
            }
        }
        assert!(gaps.iter().all(|g| (1..2 * u64::from(rate)).contains(g)));
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        // ~10,000 gaps of standard deviation ~28.9: the mean's is ~0.29.
        assert!((mean - f64::from(rate)).abs() < 1.5, "mean gap {mean}");
        // Every gap length turns up: the skips are not stuck on a few values.
        let distinct: std::collections::BTreeSet<_> = gaps.iter().collect();
        assert_eq!(distinct.len(), 2 * rate as usize - 1);
    }

    #[test]
    fn a_seed_repeats_and_another_seed_differs() {
        let picks = |seed| {
            let mut s = Sampler::new(16, seed);
            (0..2000).map(|_| s.take()).collect::<Vec<_>>()
        };
        assert_eq!(picks(1), picks(1));
        assert_ne!(picks(1), picks(2));
    }

    #[test]
    fn below_stays_below_its_bound() {
        let mut rng = SplitMix64::new(3);
        for bound in [1u64, 2, 3, 127, u64::from(u32::MAX)] {
            assert!((0..1000).all(|_| rng.below(bound) < bound));
        }
    }
}
