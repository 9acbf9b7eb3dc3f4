//! Order statistics and subsampling on plain slices: median, percentile (nearest rank on a sorted copy), and
//! an even, deterministic subsample of an index list.

/// Median of `v` (mean of the two middle values for an even length); NaN for an empty slice. NaNs sort last.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// The `q`-quantile (`q` in `[0, 1]`) of `v`, nearest rank (the element at `round((n − 1)·q)` of the sorted
/// values); NaN when empty.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let k = ((s.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    s[k.min(s.len() - 1)]
}

/// Keeps at most `max` of `idx`, evenly spread over it (deterministic; order kept).
pub fn subsample_evenly<T: Copy>(idx: &mut Vec<T>, max: usize) {
    let n = idx.len();
    if n <= max || max == 0 {
        return;
    }
    for k in 0..max {
        idx[k] = idx[k * n / max];
    }
    idx.truncate(max);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 1.0), 5.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.2), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn subsample_evenly_keeps_an_even_spread() {
        let mut idx: Vec<u32> = (0..10).collect();
        subsample_evenly(&mut idx, 4);
        assert_eq!(idx, vec![0, 2, 5, 7]);
        let mut short: Vec<u32> = vec![3, 9];
        subsample_evenly(&mut short, 4);
        assert_eq!(short, vec![3, 9]);
        let mut big: Vec<u32> = (0..1000).map(|i| 2 * i).collect();
        subsample_evenly(&mut big, 256);
        assert_eq!(big.len(), 256);
        assert!(big.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(big[0], 0);
        assert!(*big.last().unwrap() >= 1990);
    }
}
