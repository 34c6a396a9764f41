//! Covering a time range with stored buckets.
//!
//! A range `[a, b)` (UTC ms, whole minutes) is answered exactly by the coarsest stored
//! buckets that fit inside it: greedily, a day bucket where `a` is day-aligned and the day
//! fits, else an hour, else a quarter, else a minute. Minutes are only needed at range edges
//! that are not 15-minute aligned; if such a minute is older than the minute retention the
//! range cannot be answered exactly (`range_not_retained`). Quarter, hour and day buckets
//! older than the long retention were evicted and contribute nothing (documented as zero).

use crate::model::Granularity;
use crate::{Error, Result};

/// Appends `(granularity, bucket start)` pieces exactly covering `[a, b)`.
///
/// `retained_from[g]` is the first retained bucket start of granularity `g`.
pub(crate) fn cover(a: i64, b: i64, retained_from: &[i64; 4], out: &mut Vec<(Granularity, i64)>) -> Result<()> {
    let mut t = a;
    'outer: while t < b {
        for g in [Granularity::Day, Granularity::Hour, Granularity::Quarter] {
            let len = g.len_ms();
            if t.rem_euclid(len) == 0 && t + len <= b {
                if t >= retained_from[g.index()] {
                    out.push((g, t));
                }
                t += len;
                continue 'outer;
            }
        }
        let m = Granularity::Minute;
        if t.rem_euclid(m.len_ms()) != 0 || t + m.len_ms() > b {
            return Err(Error::query("unaligned_range", format!("range boundary {t} ms is not a whole minute")));
        }
        if t < retained_from[m.index()] {
            return Err(Error::query(
                "range_not_retained",
                format!("minute rows before {} ms are no longer retained; align from/to to 15 minutes for older ranges", retained_from[m.index()]),
            ));
        }
        out.push((m, t));
        t += m.len_ms();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;
    const Q: i64 = 15 * M;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;

    #[test]
    fn coarsest_pieces_first() {
        let all = [i64::MIN; 4];
        let mut out = Vec::new();
        cover(D - Q - 2 * M, 2 * D + H + Q + M, &all, &mut out).unwrap();
        use Granularity::*;
        assert_eq!(
            out,
            vec![(Minute, D - Q - 2 * M), (Minute, D - Q - M), (Quarter, D - Q), (Day, D), (Hour, 2 * D), (Quarter, 2 * D + H), (Minute, 2 * D + H + Q),]
        );
    }

    #[test]
    fn evicted_minutes_are_an_error_evicted_days_are_empty() {
        let retained = [10 * D, 5 * D, 5 * D, 5 * D];
        let mut out = Vec::new();
        cover(D, 2 * D, &retained, &mut out).unwrap();
        assert!(out.is_empty());
        let err = cover(D + M, 2 * D, &retained, &mut out).unwrap_err();
        assert!(matches!(err, Error::InvalidQuery { code: "range_not_retained", .. }));
        assert!(cover(D + 1, 2 * D, &retained, &mut out).is_err());
    }
}
