//! A trie of topic filters that answers, on every PUBLISH, "which subscriptions match this topic
//! name?".
//!
//! Each node is one filter level. Literal levels hang off a per-node `HashMap`, and the `+` and
//! `#` levels get dedicated slots, so a match walk does one hash lookup per topic level and
//! otherwise only follows the `+` and `#` slots beside it. Its cost therefore depends on the
//! topic's levels and the branches that match, never on unrelated filters.
//!
//! Filters stored here are plain: the broker strips `$share/{group}/` before inserting.
//!
//! Invariants:
//! - A node holds a value exactly when a stored filter ends there, and then also holds that
//!   filter's full string, so matches are reported without rebuilding it.
//! - Apart from the root, every node holds a value or has a child: `remove_if` prunes the chain a
//!   removal leaves empty. `len` counts the values.
//! - Nothing recurses over levels. A 65,535-byte filter can have 65,536 levels, and recursion
//!   that deep (the compiler's recursive `Drop` included) would overflow a task's stack, so walks
//!   use explicit stacks and the tree takes itself apart iteratively when dropped.
//! - `for_each_match` allocates only when a walk has more than `INLINE_PENDING` `+` branches
//!   waiting at once, which takes a topic that deep and a filter set that wild.

use std::collections::HashMap;
use std::mem;

/// Stored topic filters, each with a value of type `V`.
pub struct TopicTree<V> {
    root: Node<V>,
    len: usize,
}

/// One filter level. Literal children are keyed by level; `+` and `#` have their own slots
/// because every match walk looks at them, and keeping them out of the map saves two lookups.
///
/// The map uses std's randomly seeded hasher on purpose: clients choose the levels, and a fixed
/// fast hasher would let them pile filters into one bucket.
struct Node<V> {
    value: Option<(Box<str>, V)>,
    children: HashMap<Box<str>, Node<V>>,
    plus: Option<Box<Node<V>>>,
    hash: Option<Box<Node<V>>>,
}

/// How many pending `+` branches a match walk keeps on the call stack before using the heap.
const INLINE_PENDING: usize = 16;

// === impl TopicTree ===

impl<V> TopicTree<V> {
    pub fn new() -> Self {
        Self { root: Node::default(), len: 0 }
    }

    /// The value for `filter`, created with V::default() if absent.
    pub fn entry(&mut self, filter: &str) -> &mut V
    where
        V: Default,
    {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        if node.value.is_none() {
            self.len += 1;
        }
        let (_, value) = node.value.get_or_insert_with(|| (filter.into(), V::default()));
        value
    }

    pub fn get(&self, filter: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.child(level)?;
        }
        node.value.as_ref().map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        self.node_mut(filter)?.value.as_mut().map(|(_, value)| value)
    }

    /// Removes the value of `filter` when `pred` says so, pruning now-empty nodes; returns it.
    pub fn remove_if(&mut self, filter: &str, pred: impl FnOnce(&V) -> bool) -> Option<V> {
        let node = self.node_mut(filter)?;
        if !pred(&node.value.as_ref()?.1) {
            return None;
        }
        let (_, value) = node.value.take()?;
        self.len -= 1;
        self.prune(filter);
        Some(value)
    }

    /// Calls `f(filter, value)` for the value of every stored filter that matches topic name
    /// `topic` (each matching filter once), honouring `+`, `#` (incl. parent match: `a/#` matches
    /// `a`) and the `$` rule.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a str, &'a V)) {
        // A walk is a depth-first search over (node, rest of the topic after that node's level).
        // The literal child is followed at once and the `+` child is left pending. A node is
        // reached by one path of levels only, so each filter is reported at most once.
        let mut pending = Pending::new();
        let (level, rest) = split_first(topic);
        // Wildcards in the first level never match a `$` topic (MQTT 5.0 section 4.7.2), which
        // makes the root the one node whose wildcard slots depend on the topic.
        if !topic.starts_with('$') {
            if let Some(hash) = &self.root.hash {
                hash.report(&mut f);
            }
            if let Some(plus) = self.root.plus.as_deref() {
                pending.push((plus, rest));
            }
        }
        let mut next = self.root.children.get(level).map(|child| (child, rest));
        while let Some((node, rest)) = next.or_else(|| pending.pop()) {
            // `#` takes whatever is left of the topic, and nothing is fine too: `a/#` matches `a`.
            if let Some(hash) = &node.hash {
                hash.report(&mut f);
            }
            next = match rest {
                None => {
                    node.report(&mut f);
                    None
                }
                Some(rest) => {
                    let (level, rest) = split_first(rest);
                    if let Some(plus) = node.plus.as_deref() {
                        pending.push((plus, rest));
                    }
                    node.children.get(level).map(|child| (child, rest))
                }
            };
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node_mut(&mut self, filter: &str) -> Option<&mut Node<V>> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(level)?;
        }
        Some(node)
    }

    /// Cuts off the chain of empty nodes that ends at `filter`, if its node is now empty.
    ///
    /// A first, read-only walk finds the deepest node on the path that must stay (the root, or
    /// one holding a value or another child); a second walk detaches the edge below it.
    fn prune(&mut self, filter: &str) {
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in filter.split('/').enumerate() {
            if node.value.is_some() || node.edges() > 1 {
                keep_depth = depth;
            }
            match node.child(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if node.value.is_some() || node.edges() > 0 {
            return;
        }
        let mut levels = filter.split('/');
        let mut node = &mut self.root;
        for level in levels.by_ref().take(keep_depth) {
            match node.child_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(removed) = levels.next().and_then(|level| node.take_child(level)) {
            dismantle(removed);
        }
    }
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Drop for TopicTree<V> {
    fn drop(&mut self) {
        dismantle(mem::take(&mut self.root));
    }
}

// === impl Node ===

impl<V> Node<V> {
    fn child(&self, level: &str) -> Option<&Node<V>> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.children.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    /// The child for `level`, created if absent. A new literal key is allocated even when the
    /// child exists, which is fine for SUBSCRIBE and keeps the borrow checker happy.
    fn child_or_insert(&mut self, level: &str) -> &mut Node<V> {
        match level {
            "+" => self.plus.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            _ => self.children.entry(level.into()).or_default(),
        }
    }

    fn take_child(&mut self, level: &str) -> Option<Node<V>> {
        match level {
            "+" => self.plus.take().map(|node| *node),
            "#" => self.hash.take().map(|node| *node),
            _ => self.children.remove(level),
        }
    }

    fn edges(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }

    fn report<'a>(&'a self, f: &mut impl FnMut(&'a str, &'a V)) {
        if let Some((filter, value)) = &self.value {
            f(filter, value);
        }
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self { value: None, children: HashMap::new(), plus: None, hash: None }
    }
}

// === helpers ===

/// A node still to visit and the topic left after its level (`None` once the topic is used up).
/// Nodes live as long as the tree (`'a`), topic slices as long as the topic (`'t`).
type Frame<'a, 't, V> = (&'a Node<V>, Option<&'t str>);

/// The stack of pending `+` branches: the first `INLINE_PENDING` live in an array on the call
/// stack, the rest in a `Vec` that only allocates once it is pushed to.
struct Pending<'a, 't, V> {
    inline: [Option<Frame<'a, 't, V>>; INLINE_PENDING],
    inline_len: usize,
    spill: Vec<Frame<'a, 't, V>>,
}

impl<'a, 't, V> Pending<'a, 't, V> {
    fn new() -> Self {
        Self { inline: [None; INLINE_PENDING], inline_len: 0, spill: Vec::new() }
    }

    fn push(&mut self, frame: Frame<'a, 't, V>) {
        match self.inline.get_mut(self.inline_len) {
            Some(slot) => {
                *slot = Some(frame);
                self.inline_len += 1;
            }
            None => self.spill.push(frame),
        }
    }

    /// Pops the newest frame: the spill only fills while the array is full, so it is newer.
    fn pop(&mut self) -> Option<Frame<'a, 't, V>> {
        if let Some(frame) = self.spill.pop() {
            return Some(frame);
        }
        self.inline_len = self.inline_len.checked_sub(1)?;
        self.inline[self.inline_len].take()
    }
}

/// Splits off the first level: `("a", Some("b/c"))` for `a/b/c`, `("a", None)` for `a`.
fn split_first(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (topic, None),
    }
}

/// Drops a subtree without recursing: each node is emptied of its children before it drops.
fn dismantle<V>(node: Node<V>) {
    if node.edges() == 0 {
        return;
    }
    let mut stack = vec![node];
    while let Some(mut node) = stack.pop() {
        stack.extend(node.children.drain().map(|(_, child)| child));
        stack.extend(node.plus.take().map(|child| *child));
        stack.extend(node.hash.take().map(|child| *child));
    }
}

#[cfg(test)]
mod tests;
