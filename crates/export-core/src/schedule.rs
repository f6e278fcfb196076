//! Schedules (SPEC §16): a profile's `schedule = { cron, timezone, request }`, the times it
//! fires in its time zone, and the catch-up rule that picks the one fire a scheduler makes.
//! Pure: the scheduler asks with the time it read and what the store says was fired.
//!
//! Fire times follow croner's handling of daylight saving time, in the named zone:
//! - a wall time that does not exist (the clock springs forward over it) fires once, at
//!   the first minute after the gap on the same day (`30 2 * * *` in Europe/Berlin on the
//!   spring-forward day fires at 03:00 CEST);
//! - a wall time that happens twice (the clock falls back over it) fires once, at its
//!   first occurrence, for a pattern with fixed minutes and hours (`30 2 * * *`); a
//!   pattern with a wildcard or step in its minute or hour field (`*/15 * * * *`) fires
//!   in both passes, since it follows real time (every 15 minutes stays every 15 minutes).

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::plan::RunRequest;

/// `schedule = { cron = "0 2 * * *", timezone = "Europe/Berlin", request = { … } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields: minute, hour, day of month, month, day of week.
    pub cron: String,
    /// An IANA time zone name (`Europe/Berlin`, `UTC`); the cron fields are its wall time.
    pub timezone: String,
    /// The run each fire asks for: the body of `POST /export-center/runs` without
    /// `profileId` (the schedule's profile), planned like a request when it fires.
    #[serde(default)]
    pub request: RunRequest,
}

/// What made a run: a request to the API, or a schedule's fire at `at` (its fire time,
/// not the time the run was created). Not part of the plan: a scheduled run's outputs
/// are those of an API run of the same request and snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    #[default]
    Api,
    Schedule {
        at: DateTime<Utc>,
    },
}

/// The type of a [`Trigger`], which runs can be listed by (`?trigger=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    Api,
    Schedule,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Schedule => "schedule",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Api, Self::Schedule]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl Trigger {
    pub fn kind(&self) -> TriggerKind {
        match self {
            Self::Api => TriggerKind::Api,
            Self::Schedule { .. } => TriggerKind::Schedule,
        }
    }

    /// The fire time of a scheduled run.
    pub fn fire_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Api => None,
            Self::Schedule { at } => Some(*at),
        }
    }
}

/// A schedule field that does not parse; `field` is its path under the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl Schedule {
    /// The schedule's fire times, or the field that does not parse.
    pub fn fire_times(&self) -> Result<FireTimes, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&self.cron)
            .map_err(|err| ScheduleError {
                field: "schedule.cron",
                message: format!("`{}` is not a 5-field cron expression: {err}", self.cron),
            })?;
        let zone = Tz::from_str(&self.timezone).map_err(|_| ScheduleError {
            field: "schedule.timezone",
            message: format!(
                "`{}` is not an IANA time zone name such as `Europe/Berlin` or `UTC`",
                self.timezone
            ),
        })?;
        let times = FireTimes { cron, zone };
        // A pattern that never matches (`0 0 31 2 *`) would make every search fail.
        if times.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(ScheduleError {
                field: "schedule.cron",
                message: format!("`{}` never fires", self.cron),
            });
        }
        Ok(times)
    }
}

/// A parsed schedule: when it fires, as instants.
#[derive(Debug, Clone)]
pub struct FireTimes {
    cron: Cron,
    zone: Tz,
}

impl FireTimes {
    /// The first fire strictly after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&at.with_timezone(&self.zone), false)
            .ok()
            .map(|fire| fire.with_timezone(&Utc))
    }

    /// The latest fire at or before `at`.
    ///
    /// Found by walking forward from a fire before it, so that it is always one of the
    /// times `next_after` gives: a backward search alone could land on the second pass
    /// of a repeated hour, which the forward sequence skips for fixed-time patterns.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zoned = at.with_timezone(&self.zone);
        let near = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        let mut fire = match self.cron.find_previous_occurrence(&near, false) {
            Ok(earlier) => earlier.with_timezone(&Utc),
            // Nothing before it: `near` is the very first fire (year 1), or the search
            // limit was reached; step forward from just before `near`.
            Err(_) => near.with_timezone(&Utc) - TimeDelta::seconds(1),
        };
        let mut latest = None;
        while let Some(next) = self.next_after(fire) {
            if next > at {
                break;
            }
            latest = Some(next);
            fire = next;
        }
        latest
    }

    /// The catch-up rule: the one fire a scheduler makes at `now`, if any. It is the
    /// latest fire at or before `now`, provided that it is later than the last recorded
    /// fire (`last_fire`) and not before the schedule was first seen (`since`). Fires
    /// missed while no scheduler ran are not made one by one: after downtime, only the
    /// latest of them is, once.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        last_fire: Option<DateTime<Utc>>,
        since: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let latest = self.latest_at_or_before(now)?;
        let after_last = last_fire.is_none_or(|last| latest > last);
        (after_last && latest >= since).then_some(latest)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn schedule(cron: &str, timezone: &str) -> FireTimes {
        Schedule {
            cron: cron.to_owned(),
            timezone: timezone.to_owned(),
            request: RunRequest::default(),
        }
        .fire_times()
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// Every fire in (`from`, `to`], in order.
    fn fires(times: &FireTimes, from: &str, to: &str) -> Vec<String> {
        let (mut at, to) = (utc(from), utc(to));
        let mut found = Vec::new();
        while let Some(next) = times.next_after(at).filter(|next| *next <= to) {
            found.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            at = next;
        }
        found
    }

    #[test]
    fn fields_that_do_not_parse_are_named() {
        let bad = |cron: &str, timezone: &str| {
            Schedule {
                cron: cron.to_owned(),
                timezone: timezone.to_owned(),
                request: RunRequest::default(),
            }
            .fire_times()
            .unwrap_err()
            .field
        };
        assert_eq!(bad("61 * * * *", "UTC"), "schedule.cron");
        assert_eq!(bad("0 * * * * *", "UTC"), "schedule.cron", "six fields");
        assert_eq!(bad("not cron", "UTC"), "schedule.cron");
        assert_eq!(bad("0 0 31 2 *", "UTC"), "schedule.cron", "never fires");
        assert_eq!(bad("0 2 * * *", "Europe/Atlantis"), "schedule.timezone");
        assert_eq!(bad("0 2 * * *", "+02:00"), "schedule.timezone");
    }

    #[test]
    fn next_after_is_strictly_after_and_latest_is_at_or_before() {
        let times = schedule("*/15 * * * *", "UTC");
        let at = utc("2026-12-03T10:15:00Z");
        assert_eq!(times.next_after(at), Some(utc("2026-12-03T10:30:00Z")));
        assert_eq!(times.latest_at_or_before(at), Some(at));
        assert_eq!(times.latest_at_or_before(utc("2026-12-03T10:29:59Z")), Some(at));
    }

    #[test]
    fn a_nonexistent_local_time_fires_once_after_the_gap() {
        // Europe/Berlin springs forward on 2026-03-29 at 02:00 CET to 03:00 CEST: 02:30
        // does not exist that day, and the fire comes at 03:00 CEST (01:00 UTC).
        let times = schedule("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&times, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        // America/New_York springs forward on 2026-03-08 at 02:00 EST to 03:00 EDT.
        let times = schedule("30 2 * * *", "America/New_York");
        assert_eq!(
            fires(&times, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_not_twice() {
        // Europe/Berlin falls back on 2026-10-25 at 03:00 CEST to 02:00 CET: 02:30 happens
        // at 00:30 UTC and again at 01:30 UTC; the schedule fires at the first only.
        let times = schedule("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&times, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z"
            ]
        );
        // Looking back from after the second pass finds the first, not the second.
        assert_eq!(
            times.latest_at_or_before(utc("2026-10-25T01:45:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // America/New_York falls back on 2026-11-01 at 02:00 EDT to 01:00 EST.
        let times = schedule("30 1 * * *", "America/New_York");
        assert_eq!(
            fires(&times, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z"),
            [
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
    }

    #[test]
    fn a_daily_schedule_fires_once_a_day_across_both_transitions() {
        let times = schedule("0 2 * * *", "Europe/Berlin");
        // Spring forward: 02:00 does not exist on 2026-03-29 and is taken as 03:00 CEST.
        assert_eq!(
            fires(&times, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
            [
                "2026-03-28T01:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:00:00Z",
                "2026-03-31T00:00:00Z"
            ]
        );
        // Fall back: 02:00 happens twice on 2026-10-25 (00:00 and 01:00 UTC), fired once.
        assert_eq!(
            fires(&times, "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z"),
            [
                "2026-10-24T00:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-26T01:00:00Z",
                "2026-10-27T01:00:00Z"
            ]
        );
        // Every day of the year, one fire a day (365 in 2026), whatever the offset.
        let year = fires(&times, "2025-12-31T12:00:00Z", "2026-12-31T12:00:00Z");
        assert_eq!(year.len(), 365);
        let days: std::collections::BTreeSet<_> = year.iter().map(|fire| fire[..10].to_owned()).collect();
        assert_eq!(days.len(), 365);
    }

    #[test]
    fn an_interval_schedule_follows_real_time_through_the_repeated_hour() {
        // Every 30 minutes stays every 30 minutes of real time when the clock falls back.
        let times = schedule("*/30 * * * *", "Europe/Berlin");
        assert_eq!(
            fires(&times, "2026-10-24T23:45:00Z", "2026-10-25T02:00:00Z"),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
    }

    #[test]
    fn after_downtime_only_the_latest_missed_fire_is_due() {
        let times = schedule("* * * * *", "UTC");
        let since = utc("2026-12-03T09:00:30Z");
        let last = Some(utc("2026-12-03T10:00:00Z"));
        // Five fires were missed: only the latest is due, once.
        let now = utc("2026-12-03T10:05:20Z");
        assert_eq!(times.due(now, last, since), Some(utc("2026-12-03T10:05:00Z")));
        assert_eq!(times.due(now, Some(utc("2026-12-03T10:05:00Z")), since), None);
        // Nothing recorded yet: never a fire from before the schedule was first seen.
        let first_seen = utc("2026-12-03T10:05:10Z");
        assert_eq!(times.due(now, None, first_seen), None);
        assert_eq!(
            times.due(utc("2026-12-03T10:06:00Z"), None, first_seen),
            Some(utc("2026-12-03T10:06:00Z"))
        );
    }

    #[test]
    fn the_daily_catch_up_after_a_day_down_is_the_latest_day() {
        let times = schedule("0 2 * * *", "Europe/Berlin");
        let since = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let last = Some(utc("2026-10-20T00:00:00Z"));
        assert_eq!(
            times.due(utc("2026-10-25T00:59:00Z"), last, since),
            Some(utc("2026-10-25T00:00:00Z"))
        );
        // An hour later (the second 02:00) nothing more is due.
        assert_eq!(
            times.due(
                utc("2026-10-25T01:30:00Z"),
                Some(utc("2026-10-25T00:00:00Z")),
                since
            ),
            None
        );
    }
}
