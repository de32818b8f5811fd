//! When a running connection parks: at once after CONNACK (so a connection storm never holds
//! a task per connection), then after `Parker::after` without traffic (`parker.rs`).

use std::sync::Arc;

use tokio::time::Instant;

use super::Parker;

/// The parking side of a running connection's timer.
pub(super) struct ParkTimer {
    pub(super) parker: Arc<Parker>,
    /// Whether to park at the next moment with nothing to do.
    due: bool,
    /// Whether anything was read or woken since `check` was set.
    active: bool,
    /// When to look whether the connection was quiet since the last look.
    check: Instant,
}

impl ParkTimer {
    /// For a connection that has just sent its CONNACK: it parks at once.
    pub(super) fn connected(parker: Arc<Parker>) -> ParkTimer {
        ParkTimer { parker, due: true, active: false, check: Instant::now() }
    }

    /// For a connection that was just woken: it parks again after `Parker::after` of quiet.
    pub(super) fn woken(parker: Arc<Parker>) -> ParkTimer {
        let check = Instant::now() + parker.after();
        ParkTimer { parker, due: false, active: false, check }
    }

    pub(super) fn is_due(&self) -> bool {
        self.due
    }

    /// When the connection's timer must fire for the next look, if a look is pending.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.due).then_some(self.check)
    }

    /// Something was read or woken: the connection is not quiet.
    pub(super) fn stir(&mut self) {
        self.active = true;
    }

    /// The connection's timer fired at `now`: a connection quiet since the last look is due
    /// to park, an active one is looked at again after `Parker::after`.
    pub(super) fn look(&mut self, now: Instant) {
        if self.check > now {
            return;
        }
        if self.active {
            self.active = false;
            self.check = now + self.parker.after();
        } else {
            self.due = true;
        }
    }
}
