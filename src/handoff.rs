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
//! and the first attempt takes them. Retries and fallbacks start later, from a timer; they
//! find the facts by the request's `x-request-id` (one header read, on retries only). A
//! request id two requests in flight share (a client may set its own) is ambiguous and not
//! used; an attempt that finds nothing falls back to reading the body's shape.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::operation::Operation;

/// What the upstream filter needs to know of the client's request, and what it tells
/// back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub operation: Operation,
    /// The client asked for a stream.
    pub stream: bool,
    /// The answer's total tokens, as its provider reported them (set by the attempt that
    /// answered).
    pub total_tokens: Cell<Option<u64>>,
}

/// The per-VM hand-off: the first attempt's slot, and every request in flight by id.
#[derive(Default)]
pub struct Handoff {
    pending: RefCell<Option<Rc<RequestInfo>>>,
    /// How many requests in flight carry the id, and their facts (`None` once more than
    /// one has: the id stays ambiguous until all of them are done).
    by_id: RefCell<HashMap<String, (usize, Option<Rc<RequestInfo>>)>>,
}

thread_local! {
    /// The VM's hand-off, shared by the downstream and upstream filter contexts.
    pub static HANDOFF: Handoff = Handoff::default();
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
        *self.pending.borrow_mut() = Some(Rc::clone(&info));
        info
    }

    /// For the first attempt: what the downstream filter just published.
    pub fn take_pending(&self) -> Option<Rc<RequestInfo>> {
        self.pending.borrow_mut().take()
    }

    /// For a retry or fallback: the request's facts by its id, unless ambiguous.
    pub fn find(&self, request_id: &str) -> Option<Rc<RequestInfo>> {
        self.by_id.borrow().get(request_id).and_then(|(_, known)| known.clone())
    }

    /// The request is done (its downstream context ends): no attempt can follow.
    pub fn forget(&self, request_id: &str) {
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

    #[test]
    fn the_first_attempt_takes_the_slot_and_retries_find_by_id() {
        let h = Handoff::default();
        let _ = h.publish(Some("req-1"), info(Operation::Embeddings));
        assert_eq!(h.take_pending().map(|i| i.operation), Some(Operation::Embeddings));
        assert_eq!(h.take_pending(), None, "taken once");
        assert_eq!(h.find("req-1").map(|i| i.operation), Some(Operation::Embeddings));
        assert_eq!(h.find("req-2"), None);
        h.forget("req-1");
        assert_eq!((h.find("req-1"), h.in_flight()), (None, 0));
    }

    #[test]
    fn a_shared_request_id_is_ambiguous_and_never_misattributed() {
        let h = Handoff::default();
        let _ = h.publish(Some("same"), info(Operation::Chat));
        let _ = h.publish(Some("same"), info(Operation::Completions));
        assert_eq!(h.find("same"), None);
        h.forget("same");
        // The other request with that id is still in flight: a newcomer must not make
        // the id point at its facts.
        let _ = h.publish(Some("same"), info(Operation::Embeddings));
        assert_eq!(h.find("same"), None);
        h.forget("same");
        h.forget("same");
        assert_eq!(h.in_flight(), 0);
        let _ = h.publish(Some("same"), info(Operation::Embeddings));
        assert_eq!(h.find("same").map(|i| i.operation), Some(Operation::Embeddings));
        let _ = h.publish(None, info(Operation::Chat));
        assert_eq!(h.take_pending().map(|i| i.operation), Some(Operation::Chat));
    }
}
