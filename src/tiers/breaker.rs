//! The shared tier's circuit breaker: a state machine of the time passed in.
//!
//! Closed, it lets every call through and counts consecutive connection failures (timeouts,
//! refused or dropped connections; a command error means the tier answered, so it is not one).
//! After `failure_threshold` of them it opens: calls are skipped, so a dead or stalled Redis
//! adds no latency. After a cool-down it half-opens and lets exactly one probe through; the
//! probe's success closes it, its failure re-opens it with the cool-down doubled (up to
//! `max_cooldown`), so a long outage costs one probe now and then.

use std::time::{Duration, Instant};

/// Consecutive connection failures that open the breaker: one lost packet must not, a dead
/// server must within a handful of calls.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// First cool-down: short, so a restarted Redis is used again within about a second.
pub const DEFAULT_BASE_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cool-down: a long outage costs one probe every 30s.
pub const DEFAULT_MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub base_cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            base_cooldown: DEFAULT_BASE_COOLDOWN,
            max_cooldown: DEFAULT_MAX_COOLDOWN,
        }
    }
}

/// The breaker's state, as exposed to `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// Calls are skipped until the cool-down ends.
    Open = 1,
    /// One probe is in flight; other calls are skipped.
    HalfOpen = 2,
}

impl BreakerState {
    /// The state from its `u8` form (for atomics); unknown values read as open.
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Closed,
            2 => Self::HalfOpen,
            _ => Self::Open,
        }
    }

    /// Lower-case name for logs and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe went out at `since`; if it never reports (its caller was cancelled), another
    /// one is allowed after a cool-down, so the breaker cannot stay half-open forever.
    HalfOpen {
        since: Instant,
    },
}

/// The circuit breaker. Not synchronized: the owner wraps it in a lock.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// Cool-down of the next opening; doubles on each failed probe.
    cooldown: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Phase::Closed { failures: 0 },
            cooldown: config.base_cooldown,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go to the tier at `now`. Past an open breaker's cool-down this
    /// half-opens it and lets this one call through as the probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } if now >= until => {
                self.transition(Phase::HalfOpen { since: now });
                true
            }
            Phase::HalfOpen { since } if now >= since + self.cooldown => {
                // The previous probe never reported; send another.
                self.phase = Phase::HalfOpen { since: now };
                true
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => false,
        }
    }

    /// The tier answered (a command error counts: the connection works).
    pub fn on_success(&mut self, _now: Instant) {
        match self.phase {
            Phase::Closed { failures: 0 } => {}
            Phase::Closed { .. } => self.phase = Phase::Closed { failures: 0 },
            // A late success from a call started before the breaker opened proves the
            // connection works just as a probe would.
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                self.cooldown = self.config.base_cooldown;
                self.transition(Phase::Closed { failures: 0 });
            }
        }
    }

    /// A call failed with a connection error or a timeout.
    pub fn on_failure(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.transition(Phase::Open {
                        until: now + self.cooldown,
                    });
                } else {
                    self.phase = Phase::Closed { failures };
                }
            }
            Phase::HalfOpen { .. } => {
                self.cooldown = (self.cooldown * 2).min(self.config.max_cooldown);
                self.transition(Phase::Open {
                    until: now + self.cooldown,
                });
            }
            // Calls that started before the breaker opened report late; they change nothing.
            Phase::Open { .. } => {}
        }
    }

    fn transition(&mut self, to: Phase) {
        let from = self.state();
        self.phase = to;
        let to = self.state();
        if from != to {
            tracing::warn!(
                from = from.as_str(),
                to = to.as_str(),
                cooldown_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX),
                "shared tier circuit breaker changed state"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// At this many ms: ask `allow`, expect the answer.
        Allow(u64, bool),
        Ok(u64),
        Fail(u64),
        /// Expect this state.
        Is(BreakerState),
    }
    use BreakerState::{Closed, HalfOpen, Open};
    use Step::{Allow, Fail, Is, Ok};

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            base_cooldown: Duration::from_millis(100),
            max_cooldown: Duration::from_millis(350),
        }
    }

    fn run(name: &str, steps: &[Step]) {
        let start = Instant::now();
        let ms = |t: u64| start + Duration::from_millis(t);
        let mut breaker = Breaker::new(config());
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Allow(t, expected) => {
                    assert_eq!(breaker.allow(ms(t)), expected, "{name}: step {i} {step:?}");
                }
                Ok(t) => breaker.on_success(ms(t)),
                Fail(t) => breaker.on_failure(ms(t)),
                Is(state) => assert_eq!(breaker.state(), state, "{name}: step {i}"),
            }
        }
    }

    #[test]
    fn breaker_follows_its_state_table() {
        let cases: &[(&str, &[Step])] = &[
            ("starts closed", &[Is(Closed), Allow(0, true)]),
            (
                "opens after threshold consecutive failures",
                &[
                    Fail(0),
                    Fail(1),
                    Is(Closed),
                    Allow(2, true),
                    Fail(2),
                    Is(Open),
                    Allow(3, false),
                ],
            ),
            (
                "a success resets the count",
                &[
                    Fail(0),
                    Fail(1),
                    Ok(2),
                    Fail(3),
                    Fail(4),
                    Is(Closed),
                    Fail(5),
                    Is(Open),
                ],
            ),
            (
                "half-opens after the cool-down with exactly one probe",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(99, false),
                    Allow(100, true),
                    Is(HalfOpen),
                    Allow(101, false),
                    Allow(150, false),
                ],
            ),
            (
                "a successful probe closes",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(100, true),
                    Ok(110),
                    Is(Closed),
                    Allow(111, true),
                ],
            ),
            (
                "a failed probe re-opens with a doubled cool-down",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(100, true),
                    Fail(110),
                    Is(Open),
                    Allow(309, false),
                    Allow(310, true),
                    Is(HalfOpen),
                ],
            ),
            (
                "the cool-down is capped",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(100, true),
                    Fail(100), // cool-down 200
                    Allow(300, true),
                    Fail(300), // 350 (capped from 400)
                    Allow(649, false),
                    Allow(650, true),
                    Fail(650), // still 350
                    Allow(999, false),
                    Allow(1000, true),
                    Is(HalfOpen),
                ],
            ),
            (
                "closing resets the cool-down",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(100, true),
                    Fail(100), // cool-down 200
                    Allow(300, true),
                    Ok(300),
                    Fail(301),
                    Fail(301),
                    Fail(301),
                    Allow(400, false),
                    Allow(401, true),
                ],
            ),
            (
                "late failures while open change nothing",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(50),
                    Fail(90),
                    Allow(100, true),
                ],
            ),
            (
                "a lost probe is replaced after a cool-down",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Allow(100, true),
                    Allow(199, false),
                    Allow(200, true),
                    Is(HalfOpen),
                ],
            ),
            (
                "a late success while open closes",
                &[
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Ok(10),
                    Is(Closed),
                    Allow(11, true),
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn state_round_trips_through_u8() {
        for state in [Closed, Open, HalfOpen] {
            assert_eq!(BreakerState::from_u8(state as u8), state);
        }
    }
}
