//! The sidecar calls of one worker's requests: who owns each, and requests that share one.
//!
//! **Coalescing.** Concurrent misses of one key on one worker make one call: the first
//! request to miss leads the lookup, the others join it and pause with no call of their
//! own. When the answer comes, the leader caches it and every joined request is woken
//! with it ([`Wake`]), in its own context (the Wasm glue switches to it first).
//!
//! **Ownership.** The proxy-wasm SDK delivers a call's answer to the context that was
//! *active* when the call was made, while Envoy keeps the answer on the context that was
//! *effective* (the one the host calls act on). The two differ for calls made by a woken
//! request (active: the leader, or the root context; effective: the woken request).
//! [`OWNERS`] says which request each call belongs to, so the glue can hand an answer to
//! its owner, reading it there.
//!
//! **Deadlines.** An answer can be lost: Envoy cancels a context's calls when the context
//! ends, and the SDK drops answers for a context that has ended. Every call has a deadline
//! (its timeout, plus a grace second), after which the root context's tick wakes its owner
//! as if the sidecar had failed ([`Calls::expired`]); a lookup whose leader ended is handed
//! to one of its joined requests, which asks again.
//!
//! Everything here is per worker (a thread-local in each Wasm VM): requests on other
//! workers share what the leader caches in shared data, not this table.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::keys::KeyRecord;

/// What a key lookup found, handed to the requests that joined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    Found(Rc<KeyRecord>),
    NotFound,
    /// The sidecar did not answer usefully (down, error, timeout).
    Failed,
    /// The lookup's leader ended before its answer came: ask again.
    Retry,
}

/// What a paused request is woken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer of the key lookup it joined.
    Key(KeyAnswer),
    /// The end users are loaded (`crate::customers`): admission can go on.
    EndUsersLoaded,
    /// They are still not loaded by the request's deadline.
    EndUsersLate,
}

/// A request to wake, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub context_id: u32,
    pub event: Event,
}

/// One lookup in flight.
#[derive(Debug)]
struct Lookup {
    leader: u32,
    joined: Vec<u32>,
}

/// A worker's sidecar calls and key lookups.
#[derive(Debug, Default)]
pub struct Calls {
    /// Call token → (owning request's context, deadline in ms).
    owners: HashMap<u32, (u32, u64)>,
    /// Key hash → the lookup in flight for it.
    lookups: HashMap<String, Lookup>,
    /// Requests waiting for the end users to be loaded, with their deadlines.
    end_user_waiters: Vec<(u32, u64)>,
    /// Requests to wake, filled by a leader's answer, drained by the glue.
    wakes: Vec<Wake>,
}

/// Whether a request that missed a key asks the sidecar itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Lead,
    Join,
}

/// How long past its timeout a call's answer is waited for before its owner is woken
/// without it.
pub const GRACE_MS: u64 = 1_000;

impl Calls {
    /// A call made for request `context_id`.
    pub fn made(&mut self, token: u32, context_id: u32, deadline_ms: u64) {
        self.owners.insert(token, (context_id, deadline_ms));
    }

    /// The request that owns call `token` (its answer has come: forgotten).
    pub fn answered(&mut self, token: u32) -> Option<u32> {
        self.owners.remove(&token).map(|(owner, _)| owner)
    }

    /// The owner of call `token`, without forgetting it.
    pub fn owner(&self, token: u32) -> Option<u32> {
        self.owners.get(&token).map(|(owner, _)| *owner)
    }

    /// Joins the lookup of `hash` in flight, or starts one led by `context_id`.
    pub fn lead_or_join(&mut self, hash: &str, context_id: u32) -> Role {
        match self.lookups.get_mut(hash) {
            Some(lookup) if lookup.leader != context_id => {
                if !lookup.joined.contains(&context_id) {
                    lookup.joined.push(context_id);
                }
                Role::Join
            }
            _ => {
                self.lookups.insert(hash.to_string(), Lookup { leader: context_id, joined: Vec::new() });
                Role::Lead
            }
        }
    }

    /// The leader's lookup of `hash` ended with `answer`: its joined requests are to be
    /// woken with it.
    pub fn finish(&mut self, hash: &str, leader: u32, answer: &KeyAnswer) {
        if self.lookups.get(hash).is_some_and(|l| l.leader == leader) {
            if let Some(lookup) = self.lookups.remove(hash) {
                let wakes =
                    lookup.joined.into_iter().map(|context_id| Wake { context_id, event: Event::Key(answer.clone()) });
                self.wakes.extend(wakes);
            }
        }
    }

    /// Request `context_id` ended: it waits for nothing any more; a lookup it led goes to
    /// the requests that joined it (they ask again).
    pub fn ended(&mut self, context_id: u32) {
        self.owners.retain(|_, (owner, _)| *owner != context_id);
        let mut orphaned = Vec::new();
        for (hash, lookup) in &mut self.lookups {
            lookup.joined.retain(|&c| c != context_id);
            if lookup.leader == context_id {
                orphaned.push(hash.clone());
            }
        }
        for hash in orphaned {
            self.finish(&hash, context_id, &KeyAnswer::Retry);
        }
        self.end_user_waiters.retain(|(c, _)| *c != context_id);
        self.wakes.retain(|w| w.context_id != context_id);
    }

    /// Request `context_id` waits for the end users to be loaded, until `deadline_ms`.
    pub fn wait_for_end_users(&mut self, context_id: u32, deadline_ms: u64) {
        self.end_user_waiters.push((context_id, deadline_ms));
    }

    pub fn has_end_user_waiters(&self) -> bool {
        !self.end_user_waiters.is_empty()
    }

    /// The root tick's check: once the end users are `loaded`, every waiting request is
    /// woken; before, those past their deadline are.
    pub fn check_end_users(&mut self, loaded: bool, now_ms: u64) {
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.end_user_waiters.drain(..).partition(|(_, deadline)| loaded || *deadline <= now_ms);
        self.end_user_waiters = waiting;
        let event = if loaded { Event::EndUsersLoaded } else { Event::EndUsersLate };
        self.wakes.extend(due.into_iter().map(|(context_id, _)| Wake { context_id, event: event.clone() }));
    }

    pub fn has_wakes(&self) -> bool {
        !self.wakes.is_empty()
    }

    /// The requests to wake now.
    pub fn take_wakes(&mut self) -> Vec<Wake> {
        std::mem::take(&mut self.wakes)
    }

    /// Calls past their deadline (plus [`GRACE_MS`]) at `now_ms`, forgotten: (token, owner).
    pub fn expired(&mut self, now_ms: u64) -> Vec<(u32, u32)> {
        let late: Vec<(u32, u32)> = self
            .owners
            .iter()
            .filter(|(_, (_, deadline))| deadline.saturating_add(GRACE_MS) < now_ms)
            .map(|(token, (owner, _))| (*token, *owner))
            .collect();
        for (token, _) in &late {
            self.owners.remove(token);
        }
        late
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty() && self.lookups.is_empty() && self.wakes.is_empty() && self.end_user_waiters.is_empty()
    }
}

thread_local! {
    /// This worker's calls (one Wasm VM per worker: one table each).
    pub static OWNERS: RefCell<Calls> = RefCell::new(Calls::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lookup_per_key_and_every_joined_request_woken() {
        let mut calls = Calls::default();
        assert_eq!(calls.lead_or_join("h", 1), Role::Lead);
        assert_eq!(calls.lead_or_join("h", 2), Role::Join);
        assert_eq!(calls.lead_or_join("h", 3), Role::Join);
        assert_eq!(calls.lead_or_join("h", 2), Role::Join, "joining twice is once");
        assert_eq!(calls.lead_or_join("other", 4), Role::Lead);
        calls.finish("h", 1, &KeyAnswer::NotFound);
        let wakes = calls.take_wakes();
        assert_eq!(wakes.iter().map(|w| w.context_id).collect::<Vec<_>>(), [2, 3]);
        assert!(wakes.iter().all(|w| w.event == Event::Key(KeyAnswer::NotFound)));
        // A later miss leads a new lookup.
        assert_eq!(calls.lead_or_join("h", 5), Role::Lead);
        // Only the leader finishes a lookup.
        calls.finish("other", 9, &KeyAnswer::Failed);
        assert!(calls.take_wakes().is_empty());
    }

    #[test]
    fn a_leader_that_ends_hands_its_lookup_over() {
        let mut calls = Calls::default();
        calls.lead_or_join("h", 1);
        calls.lead_or_join("h", 2);
        calls.lead_or_join("h", 3);
        calls.ended(3);
        calls.ended(1);
        assert_eq!(calls.take_wakes(), [Wake { context_id: 2, event: Event::Key(KeyAnswer::Retry) }]);
        assert_eq!(calls.lead_or_join("h", 2), Role::Lead);
        calls.ended(2);
        assert!(calls.is_empty());
    }

    #[test]
    fn requests_wait_for_the_end_users_until_loaded_or_their_deadline() {
        let mut calls = Calls::default();
        calls.wait_for_end_users(1, 1_000);
        calls.wait_for_end_users(2, 5_000);
        calls.wait_for_end_users(3, 5_000);
        calls.ended(3);
        calls.check_end_users(false, 2_000);
        assert_eq!(calls.take_wakes(), [Wake { context_id: 1, event: Event::EndUsersLate }]);
        calls.check_end_users(true, 2_100);
        assert_eq!(calls.take_wakes(), [Wake { context_id: 2, event: Event::EndUsersLoaded }]);
        assert!(calls.is_empty());
    }

    #[test]
    fn calls_have_owners_and_deadlines() {
        let mut calls = Calls::default();
        calls.made(7, 1, 1_000);
        calls.made(8, 2, 5_000);
        assert_eq!(calls.owner(7), Some(1));
        assert_eq!(calls.expired(1_500), []);
        assert_eq!(calls.expired(2_001), [(7, 1)]);
        assert_eq!(calls.answered(7), None, "an expired call is forgotten");
        assert_eq!(calls.answered(8), Some(2));
        assert!(calls.is_empty());
    }
}
