//! What the downstream filter learned about a request, handed to the upstream filter of
//! each of its attempts, without a host call on the common path.
//!
//! Both filters run in one VM per worker (their `vm_config` is one YAML anchor), and an
//! attempt's upstream filter runs on the worker of its request. Envoy creates the first
//! attempt while the downstream filter's `Continue` is being acted on: the router's
//! `decodeHeaders` builds the upstream request and runs the upstream filter chain's
//! `decodeHeaders` synchronously, before any other stream's callback can run on that
//! worker (`Router::Filter::decodeHeaders` → `UpstreamRequest::acceptHeadersFromRouter`).
//! So the downstream filter leaves its facts in a per-VM slot as it lets the request go,
//! and the first attempt takes them. A request resumed from a callout is different: Envoy
//! starts its first attempt only after the VM callback returns, and one callback may
//! resume several requests (everyone waiting for one key lookup); then several facts wait,
//! and each first attempt finds its own by the request's id (one header read). Taking the
//! last published instead gave one request's facts to another's attempt, and none to the
//! other (an answer metered nowhere: caught by a test of 200 requests on a new key). Retries and fallbacks start later, from a timer; they
//! find the facts by the request's `x-request-id` (one header read, on retries only). A
//! request id two requests in flight share (a client may set its own) is ambiguous and not
//! used; an attempt that finds nothing falls back to reading the body's shape.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::operation::Operation;
use crate::pricing::NanoUsd;
use crate::usage::Usage;

/// What the upstream filter needs to know of the client's request, and what its
/// attempts tell back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub operation: Operation,
    /// The client asked for a stream.
    pub stream: bool,
    /// The request's input tokens as the downstream filter estimated them: what an
    /// attempt cut before its provider reported usage is metered by.
    pub input_estimate: u64,
    /// Every attempt that got an answer from its provider, in order (see [`Attempt`]).
    pub attempts: RefCell<Vec<Attempt>>,
}

/// One attempt's answer as metered, kept up to date by its upstream filter as the answer
/// arrives, so whatever moment the request ends at (an answer, a client gone, a cut
/// stream) the downstream filter reads what it cost without a host call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// The deployment's provider and the provider's model.
    pub provider: &'static str,
    pub model: String,
    /// The provider's status.
    pub status: u16,
    /// What the provider bills, or the gateway's estimate of it while the provider has
    /// not said (`estimated`).
    pub usage: Usage,
    pub estimated: bool,
    /// `usage` at the deployment's prices; `None`: the deployment has no price.
    pub cost: Option<NanoUsd>,
}

/// Attempts kept per request: more than any retry policy makes (Envoy's `num_retries`
/// plus one); any beyond are recorded in the last one's place.
const MAX_ATTEMPTS: usize = 16;

impl RequestInfo {
    /// Starts the record of an attempt the provider answered; its index, for updates.
    pub fn begin_attempt(&self, attempt: Attempt) -> usize {
        let mut attempts = self.attempts.borrow_mut();
        if attempts.len() < MAX_ATTEMPTS {
            attempts.push(attempt);
        }
        attempts.len().saturating_sub(1)
    }

    /// Sets what attempt `index` has cost so far.
    pub fn update_attempt(&self, index: usize, usage: Usage, estimated: bool, cost: Option<NanoUsd>) {
        if let Some(a) = self.attempts.borrow_mut().get_mut(index) {
            (a.usage, a.estimated, a.cost) = (usage, estimated, cost);
        }
    }

    /// Every attempt's usage together: what the request consumed.
    pub fn usage(&self) -> Option<Usage> {
        let attempts = self.attempts.borrow();
        let mut total = Usage::default();
        attempts.iter().for_each(|a| total.add(&a.usage));
        (!attempts.is_empty()).then_some(total)
    }
}

/// The per-VM hand-off: what was published for first attempts not yet started, and every
/// request in flight by id.
#[derive(Default)]
pub struct Handoff {
    /// Published, not yet taken by a first attempt: one entry, except when several
    /// requests were let go in one VM callback (see [`Pending`]).
    pending: RefCell<Vec<(Option<String>, Rc<RequestInfo>)>>,
    /// How many requests in flight carry the id, and their facts (`None` once more than
    /// one has: the id stays ambiguous until all of them are done).
    by_id: RefCell<HashMap<String, (usize, Option<Rc<RequestInfo>>)>>,
}

thread_local! {
    /// The VM's hand-off, shared by the downstream and upstream filter contexts.
    pub static HANDOFF: Handoff = Handoff::default();
}

/// What a first attempt finds waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    /// One request waits for its first attempt: this one's (no header read needed).
    Only(Rc<RequestInfo>),
    /// Several do: requests let go in one VM callback (a sidecar's answer resumes every
    /// request that waited for it) publish one after another, and Envoy starts their
    /// first attempts only once the callback has returned (`continueDecoding` is an
    /// after-VM-call action). The attempt must find its own by the request's id.
    Several,
    Nothing,
}

/// More requests in flight on one worker than any gateway has; reached only if requests
/// were never forgotten, which then starts the map afresh instead of growing it.
const IN_FLIGHT_LIMIT: usize = 65_536;

impl Handoff {
    /// The downstream filter lets a request go to the router: its first attempt takes
    /// `info` from the slot, later ones find it by `request_id`.
    pub fn publish(&self, request_id: Option<&str>, info: RequestInfo) -> Rc<RequestInfo> {
        let info = Rc::new(info);
        if let Some(id) = request_id.filter(|id| !id.is_empty()) {
            let mut by_id = self.by_id.borrow_mut();
            if by_id.len() >= IN_FLIGHT_LIMIT {
                log::warn!("switchyard: more than {IN_FLIGHT_LIMIT} requests in flight on one worker; hand-off reset");
                by_id.clear();
            }
            by_id
                .entry(id.to_string())
                .and_modify(|(count, known)| {
                    *count += 1;
                    *known = None;
                })
                .or_insert_with(|| (1, Some(Rc::clone(&info))));
        }
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= IN_FLIGHT_LIMIT {
            pending.clear();
        }
        pending.push((request_id.map(str::to_string), Rc::clone(&info)));
        info
    }

    /// For the first attempt: what the downstream filter just published, if only one
    /// request is waiting for its first attempt.
    pub fn take_pending(&self) -> Pending {
        let mut pending = self.pending.borrow_mut();
        match pending.len() {
            0 => Pending::Nothing,
            1 => pending.pop().map_or(Pending::Nothing, |(_, info)| Pending::Only(info)),
            _ => Pending::Several,
        }
    }

    /// For a first attempt when several requests wait for theirs: its request's facts,
    /// by the request's id (unless ambiguous), taken out of the waiting ones.
    pub fn take_by_id(&self, request_id: &str) -> Option<Rc<RequestInfo>> {
        self.pending.borrow_mut().retain(|(id, _)| id.as_deref() != Some(request_id));
        self.find(request_id)
    }

    /// For a retry or fallback: the request's facts by its id, unless ambiguous.
    pub fn find(&self, request_id: &str) -> Option<Rc<RequestInfo>> {
        self.by_id.borrow().get(request_id).and_then(|(_, known)| known.clone())
    }

    /// The request is done (its downstream context ends): no attempt can follow, and a
    /// first attempt that never started leaves nothing behind.
    pub fn forget(&self, request_id: Option<&str>, info: &Rc<RequestInfo>) {
        self.pending.borrow_mut().retain(|(_, published)| !Rc::ptr_eq(published, info));
        let Some(request_id) = request_id else { return };
        let mut by_id = self.by_id.borrow_mut();
        if let Some((count, _)) = by_id.get_mut(request_id) {
            *count -= 1;
            if *count == 0 {
                by_id.remove(request_id);
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.by_id.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(operation: Operation) -> RequestInfo {
        RequestInfo { operation, ..RequestInfo::default() }
    }

    fn only(p: Pending) -> Option<Operation> {
        match p {
            Pending::Only(info) => Some(info.operation),
            _ => None,
        }
    }

    #[test]
    fn the_first_attempt_takes_the_slot_and_retries_find_by_id() {
        let h = Handoff::default();
        let one = h.publish(Some("req-1"), info(Operation::Embeddings));
        assert_eq!(only(h.take_pending()), Some(Operation::Embeddings));
        assert_eq!(h.take_pending(), Pending::Nothing, "taken once");
        assert_eq!(h.find("req-1").map(|i| i.operation), Some(Operation::Embeddings));
        assert_eq!(h.find("req-2"), None);
        h.forget(Some("req-1"), &one);
        assert_eq!((h.find("req-1"), h.in_flight()), (None, 0));
    }

    #[test]
    fn requests_let_go_in_one_callback_are_found_by_id_never_swapped() {
        // A key lookup's answer resumes three requests in one callback: Envoy starts their
        // first attempts after it, in order; each must get its own facts.
        let h = Handoff::default();
        let a = h.publish(Some("a"), info(Operation::Chat));
        let b = h.publish(Some("b"), info(Operation::Embeddings));
        let c = h.publish(Some("c"), info(Operation::Completions));
        assert_eq!(h.take_pending(), Pending::Several);
        assert_eq!(h.take_by_id("a").map(|i| i.operation), Some(Operation::Chat));
        assert_eq!(h.take_pending(), Pending::Several);
        assert_eq!(h.take_by_id("b").map(|i| i.operation), Some(Operation::Embeddings));
        assert_eq!(only(h.take_pending()), Some(Operation::Completions), "the last one alone: no header read");
        // A request that ended before its first attempt started leaves nothing behind.
        let gone = h.publish(Some("gone"), info(Operation::Chat));
        h.forget(Some("gone"), &gone);
        let d = h.publish(None, info(Operation::Embeddings));
        assert_eq!(only(h.take_pending()), Some(Operation::Embeddings));
        for (id, i) in [(Some("a"), &a), (Some("b"), &b), (Some("c"), &c), (None, &d)] {
            h.forget(id, i);
        }
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn a_shared_request_id_is_ambiguous_and_never_misattributed() {
        let h = Handoff::default();
        let first = h.publish(Some("same"), info(Operation::Chat));
        let second = h.publish(Some("same"), info(Operation::Completions));
        assert_eq!(h.find("same"), None);
        assert_eq!(h.take_pending(), Pending::Several);
        assert_eq!(h.take_by_id("same"), None, "ambiguous: the body's shape decides");
        h.forget(Some("same"), &first);
        // The other request with that id is still in flight: a newcomer must not make
        // the id point at its facts.
        let third = h.publish(Some("same"), info(Operation::Embeddings));
        assert_eq!(h.find("same"), None);
        h.forget(Some("same"), &second);
        h.forget(Some("same"), &third);
        assert_eq!(h.in_flight(), 0);
        let fourth = h.publish(Some("same"), info(Operation::Embeddings));
        assert_eq!(h.find("same").map(|i| i.operation), Some(Operation::Embeddings));
        h.forget(Some("same"), &fourth);
        let _ = h.publish(None, info(Operation::Chat));
        assert_eq!(only(h.take_pending()), Some(Operation::Chat));
    }
}
