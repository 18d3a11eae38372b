//! Business hours: weekly opening windows in a time zone. Pure: the time zone data is
//! compiled in, and `now` is given.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use super::model::Millis;

/// One opening window on a weekday, in seconds after local midnight (`end` may be
/// 86,400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub day: Weekday,
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Debug)]
pub struct Hours {
    pub time_zone: TimeZone,
    pub windows: Vec<Window>,
}

fn zoned(now: Millis, tz: &TimeZone) -> Zoned {
    let ms = i64::try_from(now).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
}

fn millis(z: &Zoned) -> Millis {
    u64::try_from(z.timestamp().as_millisecond()).unwrap_or(0)
}

impl Hours {
    pub fn is_open(&self, now: Millis) -> bool {
        let local = zoned(now, &self.time_zone);
        let second = u32::from(local.hour().unsigned_abs()) * 3600
            + u32::from(local.minute().unsigned_abs()) * 60
            + u32::from(local.second().unsigned_abs());
        self.windows
            .iter()
            .any(|w| w.day == local.weekday() && w.start <= second && second < w.end)
    }

    /// The next time the queue opens after `now` (within the coming eight days).
    pub fn next_open(&self, now: Millis) -> Option<Millis> {
        let today: Date = zoned(now, &self.time_zone).date();
        (0..8)
            .filter_map(|d| today.checked_add(d.days()).ok())
            .flat_map(|date| {
                let mut starts: Vec<u32> = self
                    .windows
                    .iter()
                    .filter(|w| w.day == date.weekday())
                    .map(|w| w.start)
                    .collect();
                starts.sort_unstable();
                starts.into_iter().filter_map(move |start| {
                    let hour = i8::try_from(start / 3600).ok()?;
                    let minute = i8::try_from(start / 60 % 60).ok()?;
                    let second = i8::try_from(start % 60).ok()?;
                    date.at(hour, minute, second, 0)
                        .to_zoned(self.time_zone.clone())
                        .ok()
                })
            })
            .map(|z| millis(&z))
            .find(|at| *at > now)
    }

    /// `at` as local wall time, for people: "Mon 09:00 (Europe/Paris)".
    pub fn describe(&self, at: Millis) -> String {
        let local = zoned(at, &self.time_zone);
        let name = self.time_zone.iana_name().unwrap_or("local time");
        format!("{} ({name})", local.strftime("%a %H:%M"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris_weekdays() -> Hours {
        let windows = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ]
        .into_iter()
        .map(|day| Window {
            day,
            start: 9 * 3600,
            end: 17 * 3600,
        })
        .collect();
        Hours {
            time_zone: TimeZone::get("Europe/Paris").unwrap(),
            windows,
        }
    }

    fn at(s: &str) -> Millis {
        millis(&s.parse::<Zoned>().unwrap())
    }

    #[test]
    fn open_and_next_opening_follow_the_local_clock() {
        let h = paris_weekdays();
        assert!(
            h.is_open(at("2026-11-23T10:00[Europe/Paris]")),
            "Monday 10:00"
        );
        assert!(
            !h.is_open(at("2026-11-23T17:00[Europe/Paris]")),
            "closes at 17:00"
        );
        assert!(!h.is_open(at("2026-11-28T10:00[Europe/Paris]")), "Saturday");
        assert_eq!(
            h.next_open(at("2026-11-27T18:30[Europe/Paris]")),
            Some(at("2026-11-30T09:00[Europe/Paris]")),
            "Friday evening -> Monday 9:00"
        );
        assert_eq!(
            h.describe(at("2026-11-30T09:00[Europe/Paris]")),
            "Mon 09:00 (Europe/Paris)"
        );
    }

    #[test]
    fn opening_across_a_daylight_saving_change_is_at_local_nine() {
        let h = paris_weekdays();
        // Clocks go back on Sunday 2026-10-25 in Paris.
        assert_eq!(
            h.next_open(at("2026-10-24T12:00[Europe/Paris]")),
            Some(at("2026-10-26T09:00[Europe/Paris]"))
        );
    }
}
