//! A session's queue: the deliveries waiting for the in-flight window, and their total size
//! as the queue bounds count it (`Message::queued_size`), kept in step by every change.

use std::collections::VecDeque;

use crate::broker::message::Delivery;

#[derive(Debug, Default)]
pub struct Queue {
    deliveries: VecDeque<Delivery>,
    bytes: usize,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.deliveries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// The queued deliveries' total size.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn front(&self) -> Option<&Delivery> {
        self.deliveries.front()
    }

    pub fn push_back(&mut self, delivery: Delivery) {
        self.bytes += delivery.size();
        self.deliveries.push_back(delivery);
    }

    pub fn pop_front(&mut self) -> Option<Delivery> {
        let delivery = self.deliveries.pop_front()?;
        self.bytes -= delivery.size();
        Some(delivery)
    }

    pub fn clear(&mut self) {
        self.deliveries.clear();
        self.bytes = 0;
    }

    /// Moves the deliveries `take` picks to `taken`, in order, and keeps the others.
    pub fn take_where(
        &mut self,
        mut take: impl FnMut(&Delivery) -> bool,
        taken: &mut Vec<Delivery>,
    ) {
        let mut kept = VecDeque::with_capacity(self.deliveries.len());
        for delivery in self.deliveries.drain(..) {
            if take(&delivery) {
                self.bytes -= delivery.size();
                taken.push(delivery);
            } else {
                kept.push_back(delivery);
            }
        }
        self.deliveries = kept;
    }
}
