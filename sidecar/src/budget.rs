//! Which budgets an entity has, as LiteLLM 1.106.2 applies them, from its stored fields:
//! the limits (`max_budget`, `soft_budget`; a membership's `max_budget_in_team`), the
//! reset schedule ([`Schedule`]: `budget_duration` from the moment it took effect), the
//! per-model budgets of a key (`model_max_budget`), and what a linked `/budget/*` budget
//! (`budget_id`) supplies.
//!
//! A LiteLLM budget row is a template, not a shared pool: an entity linked to it is held
//! to the row's limits with its *own* spend, and follows the row's reset schedule when it
//! has none of its own (`UserAPIKeyAuth.__init__` fills a key's unset `max_budget`,
//! `soft_budget`, `model_max_budget`, … from `litellm_budget_table_*`;
//! `check_end_user_budget` compares the end user's own `spend` to
//! `litellm_budget_table.max_budget`; `reset_budget_for_litellm_budget_table` zeroes the
//! linked end users', keys' and memberships' spend when the row's period ends). So the
//! budget reported for a linked key or end user is the entity's own (`kind` key or
//! end_user) with the row's fields where its own are unset, and `budget_id` naming the row.
//!
//! Used twice with the same rules: by the ledger (which period a record's cost goes to)
//! and by the internal API (what the filter holds the next requests to).

use serde_json::{Map, Value};

use crate::period::Schedule;
use crate::schema::to_nano;

/// The budget fields of one stored row (an entity or a `/budget/*` row); money in
/// nano-dollars, times in unix seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub max_nano: Option<i64>,
    pub soft_nano: Option<i64>,
    pub duration: Option<String>,
    /// The stored `budget_reset_at`: the first reset after the anchor (computed when the
    /// duration was set, or pinned by the caller).
    pub reset_at: Option<i64>,
    /// When the current `budget_duration` took effect (`None`: rows from before budgets
    /// were tracked, and imports: their `created_at`).
    pub anchor: Option<i64>,
    pub created_at: Option<i64>,
    pub budget_id: Option<String>,
    pub model_max_budget: Option<Value>,
    /// `{"<model>": <unix seconds>}`: when each model budget's duration took effect.
    pub model_anchors: Option<Value>,
}

fn money(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_f64).map(to_nano)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

impl Fields {
    /// From a record as the store returns it (money in dollars); `max` names the limit's
    /// field (`max_budget`, or a membership's `max_budget_in_team`).
    pub fn from_record(rec: &Map<String, Value>, max: &str) -> Fields {
        Fields {
            max_nano: money(rec.get(max)),
            soft_nano: money(rec.get("soft_budget")),
            duration: text(rec.get("budget_duration")),
            reset_at: int(rec.get("budget_reset_at")),
            anchor: int(rec.get("budget_anchor")),
            created_at: int(rec.get("created_at")),
            budget_id: text(rec.get("budget_id")).filter(|s| !s.is_empty()),
            model_max_budget: rec.get("model_max_budget").filter(|v| !v.is_null()).cloned(),
            model_anchors: rec.get("model_budget_anchors").filter(|v| !v.is_null()).cloned(),
        }
    }

    fn anchor_or_created(&self) -> i64 {
        self.anchor.or(self.created_at).unwrap_or(0)
    }

    /// The reset schedule of its own `budget_duration` (`None`: it never resets).
    pub fn schedule(&self) -> Option<Schedule> {
        Schedule::from_text(self.duration.as_deref()?, self.anchor_or_created(), self.reset_at)
    }

    fn has_models(&self) -> bool {
        self.model_max_budget.as_ref().and_then(Value::as_object).is_some_and(|m| !m.is_empty())
    }
}

/// One budget: what the filter holds requests to, and what the ledger keys period spend by.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// `key`, `team`, `team_member`, `user`, `end_user`, `key_model`.
    pub kind: &'static str,
    /// The entity's id (a key's hash; a membership `<team>:<user>`; a model budget
    /// `<hash>:<model>`).
    pub id: String,
    pub max_nano: Option<i64>,
    pub soft_nano: Option<i64>,
    /// `None`: never resets (the period is the entity's lifetime: its `spend`).
    pub schedule: Option<Schedule>,
    /// The model group of a `key_model` budget.
    pub model: Option<String>,
    /// The `/budget/*` row the limits or schedule came from.
    pub budget_id: Option<String>,
}

impl Budget {
    /// A limit is set: the filter enforces (max) or reports (soft) it.
    pub fn budgeted(&self) -> bool {
        self.max_nano.is_some() || self.soft_nano.is_some()
    }

    /// Period spend is kept for it: it has a limit, or a schedule a limit set later would
    /// use (the period's spend so far then counts, as LiteLLM's `spend` does).
    pub fn tracked(&self) -> bool {
        self.budgeted() || self.schedule.is_some()
    }
}

/// A membership's budget id: `<team>:<user>`.
pub fn member_budget_id(team_id: &str, user_id: &str) -> String {
    format!("{team_id}:{user_id}")
}

/// The entity's own budget. With a linked row (`budget_id`), each limit unset on the
/// entity is the row's, and an entity without a `budget_duration` of its own follows the
/// row's schedule (LiteLLM: "keys with budget_id but no explicit budget_duration follow
/// their linked budget tier's schedule").
pub fn own(kind: &'static str, id: &str, f: &Fields, linked: Option<&Fields>) -> Budget {
    let (schedule, from_row) = match (&f.duration, linked) {
        (Some(_), _) => (f.schedule(), false),
        (None, Some(row)) => (row.schedule(), row.duration.is_some()),
        (None, None) => (None, false),
    };
    let max = f.max_nano.or_else(|| linked.and_then(|r| r.max_nano));
    let soft = f.soft_nano.or_else(|| linked.and_then(|r| r.soft_nano));
    let used_row = from_row || (f.max_nano.is_none() && max.is_some()) || (f.soft_nano.is_none() && soft.is_some());
    Budget {
        kind,
        id: id.to_owned(),
        max_nano: max,
        soft_nano: soft,
        schedule,
        model: None,
        budget_id: if used_row { f.budget_id.clone() } else { None },
    }
}

/// A number of dollars in a model budget (LiteLLM accepts `budget_limit` as a string).
fn dollars(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => n.as_f64().map(to_nano),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()).map(to_nano),
        _ => None,
    }
}

/// A key's per-model budgets (`model_max_budget`, the linked row's when the key's is
/// empty, as LiteLLM fills it): one per model whose entry has a `max_budget` and a
/// resettable `budget_duration` — LiteLLM ignores the others (`_usable_budget_config`
/// needs a duration; `_spend_gated` a max). Sorted by model.
pub fn models(hash: &str, f: &Fields, linked: Option<&Fields>) -> Vec<Budget> {
    let (holder, budget_id) = match linked {
        Some(row) if !f.has_models() && row.has_models() => (row, f.budget_id.clone()),
        _ => (f, None),
    };
    let Some(map) = holder.model_max_budget.as_ref().and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (model, cfg) in map {
        let Some(cfg) = cfg.as_object() else { continue };
        let Some(max) = dollars(cfg.get("max_budget").or_else(|| cfg.get("budget_limit"))) else { continue };
        let Some(duration) = cfg.get("budget_duration").or_else(|| cfg.get("time_period")).and_then(Value::as_str)
        else {
            continue;
        };
        let anchor = holder
            .model_anchors
            .as_ref()
            .and_then(|a| a.get(model))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| holder.anchor_or_created());
        let Some(schedule) = Schedule::from_text(duration, anchor, None) else { continue };
        out.push(Budget {
            kind: "key_model",
            id: format!("{hash}:{model}"),
            max_nano: Some(max),
            soft_nano: None,
            schedule: Some(schedule),
            model: Some(model.clone()),
            budget_id: budget_id.clone(),
        });
    }
    out.sort_by(|a, b| a.model.cmp(&b.model));
    out
}

/// The model budget governing a request on `model_group`: LiteLLM's first candidates,
/// the name as sent, then without its `provider/` prefix (`resolve_model_budget`).
pub fn model_for<'a>(models: &'a [Budget], model_group: &str) -> Option<&'a Budget> {
    let bare = model_group.rsplit('/').next().unwrap_or(model_group);
    [model_group, bare].into_iter().find_map(|name| models.iter().find(|b| b.model.as_deref() == Some(name)))
}

/// The duration text as a comparable value: `None` for "never resets" (or unparsable).
pub fn normalized_duration(v: Option<&Value>) -> Option<crate::duration::Duration> {
    let text = v.and_then(Value::as_str)?;
    if crate::duration::is_no_reset(text) {
        return None;
    }
    crate::duration::parse(text).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value, max: &str) -> Fields {
        Fields::from_record(v.as_object().unwrap(), max)
    }

    #[test]
    fn a_linked_row_fills_what_the_entity_leaves_unset() {
        let row = fields(
            json!({"budget_id": "tier", "max_budget": 10.0, "soft_budget": 8.0, "budget_duration": "1d", "created_at": 100,
                   "model_max_budget": {"gpt-4o": {"max_budget": 1, "budget_duration": "1h"}}}),
            "max_budget",
        );
        let key = fields(json!({"budget_id": "tier", "max_budget": 3.0, "created_at": 200}), "max_budget");
        let b = own("key", "h", &key, Some(&row));
        assert_eq!(
            (b.max_nano, b.soft_nano, b.budget_id.as_deref()),
            (Some(3_000_000_000), Some(8_000_000_000), Some("tier"))
        );
        assert_eq!(b.schedule.map(|s| s.anchor()), Some(100), "the row's schedule");
        let m = models("h", &key, Some(&row));
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].id.as_str(), m[0].max_nano, m[0].budget_id.as_deref()),
            ("h:gpt-4o", Some(1_000_000_000), Some("tier"))
        );
        // Its own duration wins, and "" is its own "never resets".
        let key = fields(json!({"budget_id": "tier", "budget_duration": "", "created_at": 200}), "max_budget");
        assert_eq!(own("key", "h", &key, Some(&row)).schedule, None);
        // Unlinked: only its own.
        let plain = fields(json!({"created_at": 5}), "max_budget");
        let b = own("team", "t", &plain, None);
        assert!(!b.budgeted() && !b.tracked() && b.budget_id.is_none());
    }

    #[test]
    fn model_budgets_need_a_max_and_a_duration() {
        let key = fields(
            json!({"created_at": 0, "model_budget_anchors": {"b": 50},
                   "model_max_budget": {"b": {"budget_limit": "0.5", "time_period": "1d"}, "a": {"max_budget": 1},
                                        "c": {"budget_duration": "1d"}, "d": {"max_budget": 2, "budget_duration": "2mo"},
                                        "e": "x", "openai/gpt-4o": {"max_budget": 3, "budget_duration": "1d"}}}),
            "max_budget",
        );
        let m = models("h", &key, None);
        let names: Vec<&str> = m.iter().filter_map(|b| b.model.as_deref()).collect();
        assert_eq!(names, vec!["b", "openai/gpt-4o"]);
        assert_eq!((m[0].max_nano, m[0].schedule.map(|s| s.anchor())), (Some(500_000_000), Some(50)));
        assert_eq!(model_for(&m, "openai/gpt-4o").and_then(|b| b.model.as_deref()), Some("openai/gpt-4o"));
        assert_eq!(model_for(&m, "azure/b").and_then(|b| b.model.as_deref()), Some("b"));
        assert!(model_for(&m, "gpt-4o").is_none());
    }
}
