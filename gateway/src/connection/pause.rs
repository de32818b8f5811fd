//! A publisher's pause: while a publish of ours left subscriber sessions past their soft
//! limit, we read nothing more from the client, so it slows to the slowest subscriber's pace
//! instead of a subscriber losing messages (ARCHITECTURE.md, "Flow control").

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::config::MqttConfig;
use crate::broker::session::Session;

/// The sessions a publisher waits for, and until when at the latest.
pub(super) struct Pause {
    /// Every one must drain before the pause ends: one that drains first must not end it,
    /// another may still be at its bound, where the next message would be dropped.
    congested: Vec<Arc<Session>>,
    /// When the pause ends even if they have not drained (`mqtt.max_publisher_pause_ms`).
    until: Instant,
}

impl Pause {
    /// No pause.
    pub(super) fn none() -> Pause {
        Pause { congested: Vec::new(), until: Instant::now() }
    }

    /// Starts a pause for the sessions a fan-out left congested; none when there are none or
    /// pauses are off (`max_publisher_pause_ms` 0). The one place a publisher pause starts.
    pub(super) fn start(&mut self, congested: Vec<Arc<Session>>, config: &MqttConfig) {
        let pause = config.max_publisher_pause_ms;
        if !congested.is_empty() && pause > 0 {
            self.congested = congested;
            self.until = Instant::now() + Duration::from_millis(pause);
        }
    }

    pub(super) fn is_paused(&self) -> bool {
        !self.congested.is_empty()
    }

    /// When the pause ends at the latest, while there is one.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.is_paused().then_some(self.until)
    }

    /// The session to wait for next, while paused.
    pub(super) fn waiting_on(&self) -> Option<&Arc<Session>> {
        self.congested.last()
    }

    /// Lets go of the sessions that have drained, and of all of them once the pause's time is
    /// up (marking those still congested as stalled, so that no publisher waits for them
    /// again). True when this ended the pause.
    pub(super) fn ease(&mut self, config: &MqttConfig) -> bool {
        if self.congested.is_empty() {
            return false;
        }
        let over = Instant::now() >= self.until;
        while let Some(target) = self.congested.last() {
            let still_congested = target.is_congested(config);
            if still_congested && !over {
                break;
            }
            if still_congested {
                target.mark_stalled();
            }
            self.congested.pop();
        }
        self.congested.is_empty()
    }
}
