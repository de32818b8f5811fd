//! What the subscription tree stores for one filter: its direct subscribers and its shared
//! subscription groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::session::Session;
use crate::mqtt::SubscriptionOptions;

/// One session's subscription to a filter.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// The members of one `$share/{group}/{filter}` subscription.
#[derive(Debug, Default)]
pub struct SharedGroup {
    pub name: String,
    pub members: Vec<Subscriber>,
    /// Round-robin cursor; relaxed ordering is enough because it only spreads load.
    next: AtomicUsize,
}

/// Everything subscribed to one filter.
#[derive(Debug, Default)]
pub struct FilterSubscribers {
    pub direct: Vec<Subscriber>,
    pub shared: Vec<SharedGroup>,
}

impl FilterSubscribers {
    /// Adds or replaces `subscriber`; returns true if the session was already subscribed.
    pub fn insert(&mut self, group: Option<&str>, subscriber: Subscriber) -> bool {
        let list = match group {
            None => &mut self.direct,
            Some(name) => {
                let index = match self.shared.iter().position(|g| g.name == name) {
                    Some(index) => index,
                    None => {
                        self.shared
                            .push(SharedGroup { name: name.to_string(), ..Default::default() });
                        self.shared.len() - 1
                    }
                };
                &mut self.shared[index].members
            }
        };
        match list.iter_mut().find(|s| s.session.id == subscriber.session.id) {
            Some(existing) => {
                *existing = subscriber;
                true
            }
            None => {
                list.push(subscriber);
                false
            }
        }
    }

    /// Removes `session_id`'s subscription; returns true if there was one.
    pub fn remove(&mut self, group: Option<&str>, session_id: u64) -> bool {
        match group {
            None => {
                let before = self.direct.len();
                self.direct.retain(|s| s.session.id != session_id);
                before != self.direct.len()
            }
            Some(name) => {
                let Some(index) = self.shared.iter().position(|g| g.name == name) else {
                    return false;
                };
                let members = &mut self.shared[index].members;
                let before = members.len();
                members.retain(|s| s.session.id != session_id);
                let removed = before != members.len();
                if members.is_empty() {
                    self.shared.swap_remove(index);
                }
                removed
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }
}

impl SharedGroup {
    /// Picks the member for the next message: round-robin over attached members, or over all
    /// members when none is attached (the message then waits in a persistent session), never
    /// `skip` (a member that is leaving).
    pub fn pick(&self, skip: Option<u64>) -> Option<&Subscriber> {
        let count = self.members.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = || {
            (0..count)
                .map(move |i| &self.members[(start + i) % count])
                .filter(move |s| Some(s.session.id) != skip)
        };
        candidates().find(|s| s.session.lock().attached.is_some()).or_else(|| candidates().next())
    }
}
