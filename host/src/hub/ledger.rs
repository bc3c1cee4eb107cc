//! Cluster mode: how far a client slot has published the event log, so that whoever runs the
//! slot next (another instance after a failover or a move, or this one after a reconnect)
//! publishes again what this one may not have. That point is the slot's **cursor**: every event
//! of the slot's partition up to it is done with.
//!
//! A [`Ledger`] belongs to one session of a slot. Each log event a route of the session takes
//! is *held* ([`Hold`]) until its target is done with it: the broker confirmed the publish (or
//! refused it), the mappers dropped it, or the route dropped it for a stalled queue. A hold
//! dropped before that (the session closed with the event in its queue, or unconfirmed) is
//! *abandoned*: the cursor never passes it, so the next session publishes it.
//!
//! The cursor is the lowest of: the number before the lowest held event, the number before the
//! lowest abandoned one, and how far the hub's pump has dispatched the log (`read_to`: every
//! event up to it was handed to the routes, or not taken by them). It never goes below where
//! the ledger started.
//!
//! A ledger that starts from a cursor is *pending* until the event relay has replayed the
//! slot's events after the cursor to its routes (`cluster::events`); meanwhile its routes take
//! no log events, and from then on only those after the cursor. A ledger that starts from
//! nothing (a new slot) takes log events at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Ledger {
    /// Where the session started: what is up to it was done by an earlier session.
    from: Option<i64>,
    /// `(index, count)`: the slot's share of the things (see `routing::partition_of`).
    partition: (usize, usize),
    active: AtomicBool,
    /// How far the hub's pump has dispatched the log (the router's, shared).
    read_to: Arc<AtomicI64>,
    /// How far the pump had dispatched the log when the session's routes were removed
    /// ([`Ledger::close`]); `i64::MAX` while they route.
    closed_at: AtomicI64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Held events: seq → holds.
    held: BTreeMap<i64, u32>,
    /// The lowest abandoned event.
    abandoned: Option<i64>,
}

impl Ledger {
    pub(crate) fn new(
        from: Option<i64>,
        partition: (usize, usize),
        read_to: Arc<AtomicI64>,
    ) -> Arc<Ledger> {
        Arc::new(Ledger {
            from,
            partition,
            active: AtomicBool::new(from.is_none()),
            read_to,
            closed_at: AtomicI64::new(i64::MAX),
            state: Mutex::new(State::default()),
        })
    }

    /// Where the session started.
    pub fn from(&self) -> Option<i64> {
        self.from
    }

    pub fn partition(&self) -> (usize, usize) {
        self.partition
    }

    /// Whether the routes take the log event `seq` (`None`: a signal not of the log, always).
    pub fn takes(&self, seq: Option<i64>) -> bool {
        match seq {
            None => true,
            Some(seq) => {
                self.active.load(Ordering::Acquire) && self.from.is_none_or(|from| seq > from)
            }
        }
    }

    /// The replay is done: the routes take the log's events from here on.
    pub fn activate(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// The session's routes are about to be removed: what the pump dispatches from now on is
    /// not taken by them, so the cursor stays below it. Call before removing the routes.
    pub fn close(&self) {
        let read_to = self.read_to.load(Ordering::Acquire);
        let _ =
            self.closed_at
                .compare_exchange(i64::MAX, read_to, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Holds event `seq` until its target is done with it.
    pub fn hold(self: &Arc<Self>, seq: i64) -> Hold {
        *self.lock().held.entry(seq).or_insert(0) += 1;
        Hold {
            ledger: self.clone(),
            seq,
            done: false,
        }
    }

    /// Every event of the slot up to this is done with (`None`: the ledger started from nothing
    /// and has not taken events yet).
    pub fn cursor(&self) -> Option<i64> {
        if !self.active.load(Ordering::Acquire) {
            return self.from;
        }
        // Read before the holds: an event the pump dispatched up to this point is held by now.
        let mut cursor = self
            .read_to
            .load(Ordering::Acquire)
            .min(self.closed_at.load(Ordering::Acquire));
        {
            let state = self.lock();
            if let Some((&low, _)) = state.held.first_key_value() {
                cursor = cursor.min(low - 1);
            }
            if let Some(abandoned) = state.abandoned {
                cursor = cursor.min(abandoned - 1);
            }
        }
        Some(self.from.map_or(cursor, |from| cursor.max(from)))
    }

    fn release(&self, seq: i64, abandoned: bool) {
        let mut state = self.lock();
        if let std::collections::btree_map::Entry::Occupied(mut e) = state.held.entry(seq) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        if abandoned {
            state.abandoned = Some(state.abandoned.map_or(seq, |a| a.min(seq)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One hold of a log event by a route of a [`Ledger`]. [`Hold::done`] when the target is done
/// with it; dropped otherwise, it is abandoned.
pub struct Hold {
    ledger: Arc<Ledger>,
    seq: i64,
    done: bool,
}

impl Hold {
    /// The target is done with the event.
    pub fn done(mut self) {
        self.done = true;
    }

    /// One more hold of the same event (a signal published as several messages).
    pub fn another(&self) -> Hold {
        self.ledger.hold(self.seq)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.ledger.release(self.seq, !self.done);
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({})", self.seq)
    }
}

/// A client slot's cursor across its sessions (cluster mode): each session's ledger starts
/// where the last one's cursor is.
pub struct Slot {
    /// The `clientCount` the cursor is of (another count shares the things differently).
    pub count: usize,
    /// The lease's fencing token when this instance took the slot.
    epoch: AtomicI64,
    /// The last owner's cursor, where the first session starts.
    taken_at: Option<i64>,
    /// The ledger of the last session.
    last: Mutex<Option<Arc<Ledger>>>,
}

impl Slot {
    /// Taken with the lease `epoch`, from `cursor` (the last owner's).
    pub fn new(count: usize, epoch: i64, cursor: Option<i64>) -> Arc<Slot> {
        Arc::new(Slot {
            count,
            epoch: AtomicI64::new(epoch),
            taken_at: cursor,
            last: Mutex::new(None),
        })
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Taken again (its lease was lost and taken back while its client ran on).
    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The ledger of the next session of client `index`, from the cursor.
    pub fn next_ledger(&self, index: usize, read_to: Arc<AtomicI64>) -> Arc<Ledger> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let ledger = Ledger::new(self.cursor_after(&last), (index, self.count), read_to);
        *last = Some(ledger.clone());
        ledger
    }

    /// The slot's cursor: its last session's, or where it was taken.
    pub fn cursor(&self) -> Option<i64> {
        self.cursor_after(&self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn cursor_after(&self, last: &Option<Arc<Ledger>>) -> Option<i64> {
        last.as_ref()
            .map_or(self.taken_at, |ledger| ledger.cursor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(from: Option<i64>, read_to: i64) -> (Arc<Ledger>, Arc<AtomicI64>) {
        let read = Arc::new(AtomicI64::new(read_to));
        (Ledger::new(from, (0, 1), read.clone()), read)
    }

    #[test]
    fn the_cursor_stays_below_what_is_held_or_abandoned() {
        let (l, read_to) = ledger(None, 10);
        assert!(l.takes(Some(11)));
        assert_eq!(l.cursor(), Some(10));
        let a = l.hold(12);
        let b = l.hold(14);
        let b2 = b.another();
        read_to.store(20, Ordering::Release);
        assert_eq!(l.cursor(), Some(11));
        a.done();
        assert_eq!(l.cursor(), Some(13));
        b.done();
        assert_eq!(l.cursor(), Some(13), "14 is still held once");
        b2.done();
        assert_eq!(l.cursor(), Some(20));
        // Closed: what the pump dispatches after the routes are removed is not theirs.
        l.close();
        read_to.store(25, Ordering::Release);
        assert_eq!(l.cursor(), Some(20));
        // A hold dropped undone (its session closed) stops the cursor for good.
        let (l, read_to) = ledger(None, 20);
        drop(l.hold(21));
        let c = l.hold(23);
        read_to.store(30, Ordering::Release);
        c.done();
        assert_eq!(l.cursor(), Some(20));
    }

    #[test]
    fn a_ledger_from_a_cursor_takes_log_events_after_its_replay_and_after_the_cursor() {
        let (l, read_to) = ledger(Some(50), 40);
        assert!(!l.takes(Some(60)), "pending: the replay comes first");
        assert!(l.takes(None), "signals not of the log are taken");
        assert_eq!(l.cursor(), Some(50));
        l.activate();
        assert!(!l.takes(Some(50)) && l.takes(Some(51)));
        assert_eq!(l.cursor(), Some(50), "never below where it started");
        read_to.store(70, Ordering::Release);
        let h = l.hold(55);
        assert_eq!(l.cursor(), Some(54));
        h.done();
        assert_eq!(l.cursor(), Some(70));
    }

    #[test]
    fn each_session_of_a_slot_starts_where_the_last_one_stopped() {
        let read = Arc::new(AtomicI64::new(100));
        let slot = Slot::new(3, 7, Some(90));
        assert_eq!(slot.cursor(), Some(90));
        let first = slot.next_ledger(1, read.clone());
        assert_eq!((first.from(), first.partition()), (Some(90), (1, 3)));
        first.activate();
        let unpublished = first.hold(95);
        assert_eq!(slot.cursor(), Some(94));
        drop(unpublished);
        let second = slot.next_ledger(1, read);
        assert_eq!(second.from(), Some(94));
        assert!(!second.takes(Some(95)));
    }
}
