//! The retry policy: when the next attempt is due, if any.
//!
//! Owns: the schedule with jitter and the reading of `Retry-After`. Must never: do I/O.

use rand::Rng;

/// When to try again after the `attempts_made`-th failed attempt, in milliseconds from now, or
/// `None` when the schedule is used up. `retry_after_ms` is what the receiver asked for (on
/// 429/503); it is honoured up to `retry_after_max_ms` and never shortens the schedule.
pub fn next_delay_ms(
    schedule_ms: &[u64],
    attempts_made: u32,
    jitter_percent: u8,
    retry_after_ms: Option<u64>,
    retry_after_max_ms: u64,
    rng: &mut impl Rng,
) -> Option<u64> {
    let base = *schedule_ms.get(attempts_made.checked_sub(1)? as usize)?;
    let spread = base * jitter_percent as u64 / 100;
    let jittered = if spread == 0 {
        base
    } else {
        rng.gen_range(base - spread..=base + spread)
    };
    let asked = retry_after_ms
        .map(|ms| ms.min(retry_after_max_ms))
        .unwrap_or(0);
    Some(jittered.max(asked))
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .num_milliseconds()
            .max(0) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SVIX: [u64; 7] = [
        5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
    ];

    #[test]
    fn follows_the_schedule_within_the_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (i, base) in SVIX.iter().enumerate() {
            for _ in 0..50 {
                let d = next_delay_ms(&SVIX, i as u32 + 1, 20, None, 3_600_000, &mut rng).unwrap();
                assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{d} vs {base}");
            }
        }
    }

    #[test]
    fn ends_after_the_last_delay() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(next_delay_ms(&SVIX, 8, 20, None, 0, &mut rng), None);
        assert_eq!(next_delay_ms(&[], 1, 20, None, 0, &mut rng), None);
    }

    #[test]
    fn retry_after_lengthens_but_is_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            next_delay_ms(&[1_000], 1, 0, Some(60_000), 3_600_000, &mut rng),
            Some(60_000)
        );
        assert_eq!(
            next_delay_ms(&[1_000], 1, 0, Some(10_000_000), 3_600_000, &mut rng),
            Some(3_600_000)
        );
        assert_eq!(
            next_delay_ms(&[1_000], 1, 0, Some(10), 3_600_000, &mut rng),
            Some(1_000)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
