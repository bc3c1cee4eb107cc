//! A counter of events over sliding windows: the last minute, hour and day.
//!
//! Slots: 60 of one second (PT1M), 60 of one minute (PT1H), 96 of fifteen minutes (PT24H). A slot
//! that belongs to an older period is cleared before it is reused, so each window always sums
//! exactly the events of its own span (to the slot's granularity). The slots are allocated on the
//! first event, so a counter that never counts costs a few bytes.

use chrono::{DateTime, Utc};
use std::sync::Mutex;

#[derive(Default)]
pub struct WindowCounter {
    inner: Mutex<Option<Box<Slots>>>,
}

struct Slots {
    seconds: [(i64, u64); 60],
    minutes: [(i64, u64); 60],
    quarters: [(i64, u64); 96],
    last_at: Option<DateTime<Utc>>,
}

/// Counts over the three windows and the time of the last event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub last_minute: u64,
    pub last_hour: u64,
    pub last_day: u64,
    pub last_at: Option<DateTime<Utc>>,
}

impl WindowCounts {
    pub fn add(&mut self, other: &WindowCounts) {
        self.last_minute += other.last_minute;
        self.last_hour += other.last_hour;
        self.last_day += other.last_day;
        self.last_at = self.last_at.max(other.last_at);
    }
}

fn bump(slots: &mut [(i64, u64)], period: i64) {
    let i = period.rem_euclid(slots.len() as i64) as usize;
    if slots[i].0 != period {
        slots[i] = (period, 0);
    }
    slots[i].1 += 1;
}

fn sum(slots: &[(i64, u64)], current: i64) -> u64 {
    let span = slots.len() as i64;
    slots
        .iter()
        .filter(|(period, _)| *period > current - span && *period <= current)
        .map(|(_, n)| n)
        .sum()
}

impl WindowCounter {
    pub fn record(&self, at: DateTime<Utc>) {
        let secs = at.timestamp();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slots = guard.get_or_insert_with(|| {
            Box::new(Slots {
                seconds: [(i64::MIN, 0); 60],
                minutes: [(i64::MIN, 0); 60],
                quarters: [(i64::MIN, 0); 96],
                last_at: None,
            })
        });
        bump(&mut slots.seconds, secs);
        bump(&mut slots.minutes, secs.div_euclid(60));
        bump(&mut slots.quarters, secs.div_euclid(900));
        slots.last_at = slots.last_at.max(Some(at));
    }

    pub fn counts(&self, now: DateTime<Utc>) -> WindowCounts {
        let secs = now.timestamp();
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_deref() {
            None => WindowCounts::default(),
            Some(s) => WindowCounts {
                last_minute: sum(&s.seconds, secs),
                last_hour: sum(&s.minutes, secs.div_euclid(60)),
                last_day: sum(&s.quarters, secs.div_euclid(900)),
                last_at: s.last_at,
            },
        }
    }

    pub fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn windows_slide() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let c = WindowCounter::default();
        assert_eq!(c.counts(t0), WindowCounts::default());
        c.record(t0);
        c.record(t0 + Duration::seconds(30));
        let at = |d: Duration| c.counts(t0 + d);
        assert_eq!(at(Duration::seconds(30)).last_minute, 2);
        assert_eq!(at(Duration::seconds(60)).last_minute, 1);
        assert_eq!(at(Duration::seconds(90)).last_minute, 0);
        assert_eq!(at(Duration::seconds(90)).last_hour, 2);
        assert_eq!(at(Duration::minutes(61)).last_hour, 0);
        assert_eq!(at(Duration::minutes(61)).last_day, 2);
        assert_eq!(at(Duration::hours(25)).last_day, 0);
        assert_eq!(
            at(Duration::hours(25)).last_at,
            Some(t0 + Duration::seconds(30))
        );
        // A reused slot forgets its old period.
        c.record(t0 + Duration::seconds(60));
        assert_eq!(at(Duration::seconds(60)).last_minute, 2);
        c.reset();
        assert_eq!(at(Duration::seconds(60)), WindowCounts::default());
    }
}
