//! Stereo pairing by timestamp: our own approximate-time synchroniser (`message_filters` is not available to
//! a Rust node).
//!
//! Each side keeps a short queue of unpaired messages. When a message arrives, the other side's queue is
//! searched for the message with the nearest stamp; if it lies within the tolerance the two form a pair, and
//! everything older than the pair on both sides is discarded (it can no longer be paired without going back
//! in time). Otherwise the message waits, and the oldest waiting message is discarded when the queue is full.
//! Every discarded message is counted. Memory is bounded by `2 × max_pending` messages.
//!
//! This module knows nothing of ROS message types: stamps are nanoseconds.

use std::collections::VecDeque;

/// Approximate-time pairing of two streams.
#[derive(Debug)]
pub struct StereoSync<T> {
    left: VecDeque<(i64, T)>,
    right: VecDeque<(i64, T)>,
    tolerance_ns: i64,
    max_pending: usize,
    dropped: u64,
}

/// Which stream a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The left (reference, "a") image.
    Left,
    /// The right ("b") image.
    Right,
}

impl<T> StereoSync<T> {
    /// A synchroniser pairing stamps at most `tolerance_ns` apart, keeping at most `max_pending` (≥ 1)
    /// unpaired messages per side.
    pub fn new(tolerance_ns: i64, max_pending: usize) -> Self {
        Self {
            left: VecDeque::new(),
            right: VecDeque::new(),
            tolerance_ns: tolerance_ns.max(0),
            max_pending: max_pending.max(1),
            dropped: 0,
        }
    }

    /// Messages discarded so far (never paired).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Number of messages waiting for a partner.
    pub fn pending(&self) -> usize {
        self.left.len() + self.right.len()
    }

    /// Adds a message; returns `(left, right)` with their stamps when it completes a pair.
    pub fn push(&mut self, side: Side, stamp_ns: i64, msg: T) -> Option<((i64, T), (i64, T))> {
        let (own, other) = match side {
            Side::Left => (&mut self.left, &mut self.right),
            Side::Right => (&mut self.right, &mut self.left),
        };
        let best = other
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (i, (s - stamp_ns).abs()))
            .filter(|&(_, d)| d <= self.tolerance_ns)
            .min_by_key(|&(_, d)| d)
            .map(|(i, _)| i);
        if let Some(i) = best {
            // Discard partners older than the match, and own messages older than this one.
            self.dropped += i as u64;
            let mut older = other.drain(..=i);
            let partner = older.next_back();
            drop(older);
            let before = own.len();
            own.retain(|(s, _)| *s > stamp_ns);
            self.dropped += (before - own.len()) as u64;
            let partner = partner?;
            let mine = (stamp_ns, msg);
            return Some(match side {
                Side::Left => (mine, partner),
                Side::Right => (partner, mine),
            });
        }
        own.push_back((stamp_ns, msg));
        if own.len() > self.max_pending {
            own.pop_front();
            self.dropped += 1;
        }
        None
    }

    /// Forgets all waiting messages (e.g. after time jumped backwards), counting them as dropped.
    pub fn clear(&mut self) {
        self.dropped += self.pending() as u64;
        self.left.clear();
        self.right.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn pairs_within_tolerance_in_either_order() {
        let mut s = StereoSync::new(5 * MS, 4);
        assert!(s.push(Side::Left, 100 * MS, "l1").is_none());
        let ((ls, l), (rs, r)) = s.push(Side::Right, 103 * MS, "r1").unwrap();
        assert_eq!((ls, l, rs, r), (100 * MS, "l1", 103 * MS, "r1"));
        assert!(s.push(Side::Right, 200 * MS, "r2").is_none());
        let ((_, l), (_, r)) = s.push(Side::Left, 199 * MS, "l2").unwrap();
        assert_eq!((l, r), ("l2", "r2"));
        assert_eq!(s.pending(), 0);
        assert_eq!(s.dropped(), 0);
    }

    #[test]
    fn out_of_tolerance_waits_and_old_messages_are_dropped() {
        let mut s = StereoSync::new(5 * MS, 2);
        assert!(s.push(Side::Left, 100 * MS, 1).is_none());
        assert!(s.push(Side::Right, 110 * MS, 2).is_none()); // 10 ms apart: no pair
        assert!(s.push(Side::Left, 133 * MS, 3).is_none());
        assert!(s.push(Side::Left, 166 * MS, 4).is_none()); // queue full: left@100 dropped
        assert_eq!(s.dropped(), 1);
        // right@167 pairs with left@166; right@110 and left@133 are older and can never pair now
        let ((ls, _), (rs, _)) = s.push(Side::Right, 167 * MS, 5).unwrap();
        assert_eq!((ls, rs), (166 * MS, 167 * MS));
        assert_eq!(s.dropped(), 3);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn nearest_partner_wins() {
        let mut s = StereoSync::new(10 * MS, 4);
        s.push(Side::Right, 95 * MS, 'a');
        s.push(Side::Right, 101 * MS, 'b');
        let ((_, l), (_, r)) = s.push(Side::Left, 100 * MS, 'L').unwrap();
        assert_eq!((l, r), ('L', 'b'));
        assert_eq!(s.dropped(), 1);
    }
}
