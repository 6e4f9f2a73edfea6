//! Compensated (Kahan–Neumaier) summation, as Prometheus uses for `sum`, `avg` and the
//! `*_over_time` functions, so results agree with Prometheus to the last bit.

/// Adds `inc` to the running `sum` with compensation `c`; returns the new `(sum, c)`.
/// The final value is `sum + c`. Mirrors Prometheus' `kahanSumInc` (Neumaier's variant;
/// the compensation resets once the sum overflows to ±Inf).
#[inline]
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The compensated sum of `values`.
pub fn kahan_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_sum_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensates_cancellation() {
        // naive summation loses the 1.0 entirely
        let naive: f64 = [1e100, 1.0, -1e100].iter().sum();
        assert_eq!(naive, 0.0);
        assert_eq!(kahan_sum([1e100, 1.0, -1e100]), 1.0);
    }

    #[test]
    fn infinities_survive() {
        assert_eq!(kahan_sum([f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(kahan_sum([f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    }
}
