//! Wall-clock time, from one place and in one unit: microseconds since the Unix epoch (and the
//! milliseconds that events and records carry). Every stage reads the time from the [`Clock`] it
//! was built with, never from the system directly, so a test can run a process whose clock is
//! off, as a machine's may be. Durations between two moments of one process use `Instant`
//! instead: they must not jump when the wall clock does.

/// The wall clock of one process: the system's, or the system's off by a fixed amount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_us: i64,
}

impl Clock {
    /// The system's clock.
    pub const fn system() -> Clock {
        Clock { offset_us: 0 }
    }

    /// The system's clock, `offset_ms` ahead (negative: behind), as on a machine whose clock
    /// is off.
    pub const fn off_by_ms(offset_ms: i64) -> Clock {
        Clock {
            offset_us: offset_ms * 1000,
        }
    }

    /// Microseconds since the Unix epoch: the unit of the fleet's quota schedule.
    pub fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros() + self.offset_us
    }

    /// Milliseconds since the Unix epoch: the unit of events, claims and sessions.
    pub fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_is_off_reads_the_system_time_plus_its_offset() {
        let (system, ahead) = (Clock::system(), Clock::off_by_ms(3_600_000));
        let (a, b) = (system.now_ms(), ahead.now_ms());
        let drift = b - a - 3_600_000;
        assert!((0..1_000).contains(&drift), "{drift} ms");
        assert_eq!(
            system.now_us().div_euclid(1000) / 1000,
            system.now_ms() / 1000
        );
    }
}
