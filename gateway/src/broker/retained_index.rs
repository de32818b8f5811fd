//! The retained-message index: topic names, each with a value, queried by topic filter when a
//! client subscribes.
//!
//! This is the reverse of `TopicTree`. There, filters are stored and a name is the query; here,
//! names are stored and a filter is the query, so `+` fans out over every child of a node and `#`
//! over a whole subtree. Queries run on SUBSCRIBE, not on every PUBLISH, so they may allocate the
//! stack they walk with.
//!
//! Invariants:
//! - Stored keys are topic names, without wildcards. A node holds a value exactly when a stored
//!   name ends there, and then also holds the full name, which is what `f` receives.
//! - Apart from the root, every node holds a value or has a child: `remove` and `retain` prune
//!   the chains they leave empty. `len` counts the values.
//! - Nothing recurses over levels: a 65,535-byte name can have 65,536 levels, so walks use
//!   explicit stacks and the index takes itself apart iteratively when dropped.

use std::collections::HashMap;
use std::mem;

/// Stored topic names, each with a value of type `V` (for the broker, the retained message).
pub struct RetainedIndex<V> {
    root: Node<V>,
    len: usize,
}

/// One topic level. The map uses std's randomly seeded hasher because publishers choose the
/// levels, and a fixed hasher would let them pile names into one bucket.
struct Node<V> {
    value: Option<(Box<str>, V)>,
    children: HashMap<Box<str>, Node<V>>,
}

/// Work left in a query walk.
enum Frame<'a, V> {
    /// `node` must match the levels of the filter left in `rest` (`None`: nothing is left).
    Match(&'a Node<V>, Option<&'a str>),
    /// Every value in the subtree under `node`, which a `#` matched.
    All(&'a Node<V>),
}

// === impl RetainedIndex ===

impl<V> RetainedIndex<V> {
    pub fn new() -> Self {
        Self { root: Node::default(), len: 0 }
    }

    /// Stores `value` under `topic`, returning the value it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        match &mut node.value {
            Some((_, old)) => Some(mem::replace(old, value)),
            None => {
                node.value = Some((topic.into(), value));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the value stored under `topic`, pruning the nodes that held only it.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let (_, value) = self.node_mut(topic)?.value.take()?;
        self.len -= 1;
        self.prune(topic);
        Some(value)
    }

    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref().map(|(_, value)| value)
    }

    /// Calls f(topic, value) for every stored topic the filter matches ($ rule honoured:
    /// a filter whose first level is `+` or `#` doesn't match topics starting with `$`).
    pub fn for_each_matching(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let mut stack = Vec::new();
        // The root is the one node whose wildcard expansion skips `$` names (MQTT 5.0 section
        // 4.7.2), so its level is expanded here and every later level in the loop.
        let (level, rest) = split_first(filter);
        let public =
            self.root.children.iter().filter(|(name, _)| !name.starts_with('$')).map(|(_, n)| n);
        match level {
            "#" => stack.extend(public.map(Frame::All)),
            "+" => stack.extend(public.map(|n| Frame::Match(n, rest))),
            _ => stack.extend(self.root.children.get(level).map(|n| Frame::Match(n, rest))),
        }
        while let Some(frame) = stack.pop() {
            match frame {
                Frame::All(node) => {
                    node.report(&mut f);
                    stack.extend(node.children.values().map(Frame::All));
                }
                Frame::Match(node, None) => node.report(&mut f),
                Frame::Match(node, Some(rest)) => {
                    let (level, rest) = split_first(rest);
                    match level {
                        // `#` matches the parent too: `a/#` matches `a`.
                        "#" => stack.push(Frame::All(node)),
                        "+" => stack.extend(node.children.values().map(|n| Frame::Match(n, rest))),
                        _ => stack.extend(node.children.get(level).map(|n| Frame::Match(n, rest))),
                    }
                }
            }
        }
    }

    /// Calls f(topic, value) for every stored topic, `$` topics included.
    pub fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            node.report(&mut f);
            stack.extend(node.children.values());
        }
    }

    /// Removes every entry for which keep returns false (used to drop expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        // Values are taken in one pass over the whole tree; the names that held them are then
        // pruned one by one, because pruning needs the path from the root.
        let mut removed: Vec<Box<str>> = Vec::new();
        let mut stack = vec![&mut self.root];
        while let Some(node) = stack.pop() {
            if node.value.as_ref().is_some_and(|(topic, value)| !keep(topic, value))
                && let Some((topic, _)) = node.value.take()
            {
                removed.push(topic);
            }
            stack.extend(node.children.values_mut());
        }
        self.len -= removed.len();
        for topic in &removed {
            self.prune(topic);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node_mut(&mut self, topic: &str) -> Option<&mut Node<V>> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }

    /// Cuts off the chain of empty nodes that ends at `topic`, if its node is now empty.
    ///
    /// A first, read-only walk finds the deepest node on the path that must stay (the root, or
    /// one holding a value or another child); a second walk detaches the edge below it.
    fn prune(&mut self, topic: &str) {
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in topic.split('/').enumerate() {
            if node.value.is_some() || node.children.len() > 1 {
                keep_depth = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if node.value.is_some() || !node.children.is_empty() {
            return;
        }
        let mut levels = topic.split('/');
        let mut node = &mut self.root;
        for level in levels.by_ref().take(keep_depth) {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(removed) = levels.next().and_then(|level| node.children.remove(level)) {
            dismantle(removed);
        }
    }
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Drop for RetainedIndex<V> {
    fn drop(&mut self) {
        dismantle(mem::take(&mut self.root));
    }
}

// === impl Node ===

impl<V> Node<V> {
    fn report(&self, f: &mut impl FnMut(&str, &V)) {
        if let Some((topic, value)) = &self.value {
            f(topic, value);
        }
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self { value: None, children: HashMap::new() }
    }
}

// === helpers ===

/// Splits off the first level: `("a", Some("b/c"))` for `a/b/c`, `("a", None)` for `a`.
fn split_first(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (topic, None),
    }
}

/// Drops a subtree without recursing: each node is emptied of its children before it drops.
fn dismantle<V>(node: Node<V>) {
    if node.children.is_empty() {
        return;
    }
    let mut stack = vec![node];
    while let Some(mut node) = stack.pop() {
        stack.extend(node.children.drain().map(|(_, child)| child));
    }
}

#[cfg(test)]
mod tests;
