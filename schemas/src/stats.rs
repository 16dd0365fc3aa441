//! Statistics the rules and marts share, defined once.

/// The `p`-th percentile (0..=1) of `sorted` (ascending) with linear interpolation
/// between the closest ranks, as SQL's `percentile_cont`. `None` for no values.
pub fn percentile_cont(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = p.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// [`percentile_cont`] of values in any order, in linear time: the two closest ranks
/// are selected rather than the whole slice sorted (which reorders `values`).
pub fn percentile_cont_unsorted(values: &mut [f64], p: f64) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let rank = p.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    let (_, &mut a, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let b = upper.iter().copied().min_by(f64::total_cmp).unwrap_or(a);
    Some(if frac == 0.0 { a } else { a + (b - a) * frac })
}

/// Default factor of the `cost_spike` flag and of the percentile anomaly method.
pub const SPIKE_FACTOR: f64 = 1.5;

/// SPEC 6's `sla_breach_rate`: tickets that breached their SLA over all tickets (0
/// when there are none), for one day of the mart or summed over a window.
pub fn sla_breach_rate(breached: f64, tickets: f64) -> f64 {
    if tickets > 0.0 {
        breached / tickets
    } else {
        0.0
    }
}

/// `cost_spike`: cost above `factor` × p99 of the same service's kept, non-negative
/// costs over the whole history (computed by the batch path).
pub fn is_cost_spike(cost: f64, p99_of_service: f64, factor: f64) -> bool {
    cost > factor * p99_of_service
}

/// What a kept event adds to its service's `cost_spike` distribution: its cost, unless
/// it is flagged `cost_negative` (SPEC section 4).
pub fn spike_sample(cost: f64, cost_negative: bool) -> Option<f64> {
    (!cost_negative).then_some(cost)
}

/// `cost_spike` of a kept event, given the p99 of its service's distribution (`None`
/// when the service has none yet).
pub fn cost_spike_flag(
    cost: f64,
    cost_negative: bool,
    p99_of_service: Option<f64>,
    factor: f64,
) -> bool {
    match (spike_sample(cost, cost_negative), p99_of_service) {
        (Some(c), Some(p)) => is_cost_spike(c, p, factor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_cont_interpolates_like_sql() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_cont(&v, 0.5), Some(2.5));
        assert_eq!(percentile_cont(&v, 0.0), Some(1.0));
        assert_eq!(percentile_cont(&v, 1.0), Some(4.0));
        // 0.99 * 3 = 2.97 -> 3 + 0.97 * (4 - 3)
        assert!((percentile_cont(&v, 0.99).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile_cont(&[], 0.5), None);
        assert_eq!(percentile_cont(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn unsorted_percentiles_equal_sorted_ones() {
        let mut x = 17u64;
        let mut v: Vec<f64> = (0..1001)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 40) as f64 / 7.0
            })
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [0.0, 0.5, 0.99, 0.999, 1.0] {
            assert_eq!(
                percentile_cont_unsorted(&mut v, p),
                percentile_cont(&sorted, p),
                "p = {p}"
            );
        }
        assert_eq!(percentile_cont_unsorted(&mut [], 0.5), None);
    }

    #[test]
    fn cost_spike() {
        assert!(is_cost_spike(16.0, 10.0, SPIKE_FACTOR));
        assert!(!is_cost_spike(15.0, 10.0, SPIKE_FACTOR));
        assert!(cost_spike_flag(16.0, false, Some(10.0), SPIKE_FACTOR));
        assert!(!cost_spike_flag(16.0, true, Some(10.0), SPIKE_FACTOR));
        assert!(!cost_spike_flag(16.0, false, None, SPIKE_FACTOR));
        assert_eq!(spike_sample(-3.0, true), None);
    }
}
