//! Two-phase mutations. A dry run of a mutation makes a plan: its id is
//! bound to the caller, the tool, the exact arguments and a fingerprint of
//! the state the dry run read (its diff, less the counters that move with
//! traffic, plus the cluster ID). Applying names the plan id with the same
//! arguments; the plan is then spent, and the state is read again: if its
//! fingerprint changed, the apply is refused with `CONFLICT` before Kafka is
//! touched.
//!
//! Plans live in this process's memory for their time to live. With several
//! replicas an apply must reach the replica that made the plan; the MCP
//! session itself is held by one replica too, so the Service pins clients to
//! a replica (session affinity), and an apply that lands elsewhere is
//! refused with `PLAN_EXPIRED`: plan again, nothing changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::Subject;
use crate::error::{ErrorCode, ToolError};
use crate::tool_name::ToolName;

/// The argument that names a plan when applying it.
pub const PLAN_ID_ARG: &str = "plan_id";
/// Where a dry run's result carries the plan it made.
pub const PLAN_FIELD: &str = "plan";
/// The argument of every mutation that asks for a dry run (the plan).
const DRY_RUN_ARG: &str = "dry_run";

/// Whether a call's arguments ask for a dry run: `dry_run: true`, the one
/// value the tools read as a dry run.
pub fn is_dry_run(arguments: &Value) -> bool {
    arguments.get(DRY_RUN_ARG) == Some(&Value::Bool(true))
}

/// The same arguments, asking for a dry run (an apply reads the state again so).
pub fn as_dry_run(arguments: &Value) -> Value {
    let mut again = arguments.clone();
    if let Value::Object(map) = &mut again {
        map.insert(DRY_RUN_ARG.into(), Value::Bool(true));
    }
    again
}

/// What a dry run hands back to apply later.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlanTicket {
    /// Pass as `plan_id`, with the same arguments and without `dry_run`, to apply.
    pub id: String,
    /// RFC 3339; after it the plan is refused with PLAN_EXPIRED.
    pub expires_at: String,
}

#[derive(Debug)]
struct Plan {
    /// The caller's (username, uid); None on a server without authentication.
    owner: Option<(String, String)>,
    tool: ToolName,
    arguments: Value,
    fingerprint: String,
    ttl: Duration,
    expires_at: jiff::Timestamp,
}

/// Each plan expires after its own time to live.
struct PlanExpiry;

impl moka::Expiry<String, Arc<Plan>> for PlanExpiry {
    fn expire_after_create(
        &self,
        _id: &String,
        plan: &Arc<Plan>,
        _created: Instant,
    ) -> Option<Duration> {
        Some(plan.ttl)
    }
}

/// The open plans of this process.
pub struct Plans {
    open: moka::sync::Cache<String, Arc<Plan>>,
}

impl Plans {
    pub fn new(max_open: u64) -> Self {
        Self {
            open: moka::sync::Cache::builder()
                .max_capacity(max_open)
                .expire_after(PlanExpiry)
                .build(),
        }
    }

    /// Records the plan a dry run of `tool` made and returns its ticket.
    pub fn make(
        &self,
        caller: Option<&Subject>,
        tool: ToolName,
        arguments: &Value,
        dry_run_result: &Value,
        cluster_id: Option<&str>,
        ttl: Duration,
    ) -> PlanTicket {
        let id = format!("plan-{}", uuid::Uuid::new_v4().simple());
        let expires_at = jiff::Timestamp::now() + ttl;
        let plan = Plan {
            owner: owner(caller),
            tool,
            arguments: plan_arguments(arguments),
            fingerprint: fingerprint(tool, dry_run_result, cluster_id),
            ttl,
            expires_at,
        };
        self.open.insert(id.clone(), Arc::new(plan));
        PlanTicket {
            id,
            expires_at: expires_at.to_string(),
        }
    }

    /// Takes the plan `id` for applying `tool` with `arguments`: it must be
    /// open, the caller's own, and for the same tool and arguments. A plan
    /// is taken once. Returns the fingerprint to compare with a fresh read.
    pub fn take(
        &self,
        id: &str,
        caller: Option<&Subject>,
        tool: ToolName,
        arguments: &Value,
    ) -> Result<String, ToolError> {
        let gone = || {
            ToolError::new(
                ErrorCode::PlanExpired,
                format!(
                    "plan {id} is not open here: it expired, was already applied, or was made by another replica; plan again with dry_run: true"
                ),
            )
        };
        let plan = self.open.get(id).ok_or_else(gone)?;
        if plan.owner != owner(caller) {
            // Says nothing about the plan: it is someone else's.
            return Err(ToolError::new(
                ErrorCode::PermissionDenied,
                format!("plan {id} was made by another caller"),
            ));
        }
        if plan.tool != tool {
            return Err(ToolError::invalid(format!(
                "plan {id} is for {}, not {tool}",
                plan.tool
            )));
        }
        if plan.arguments != plan_arguments(arguments) {
            return Err(ToolError::invalid(format!(
                "plan {id} was made for other arguments of {tool}; pass exactly the dry run's arguments (without dry_run)"
            )));
        }
        if plan.expires_at <= jiff::Timestamp::now() {
            self.open.invalidate(id);
            return Err(gone());
        }
        // Two applies of one plan: only the first gets it.
        self.open.remove(id).ok_or_else(gone)?;
        Ok(plan.fingerprint.clone())
    }
}

fn owner(caller: Option<&Subject>) -> Option<(String, String)> {
    caller.map(|s| (s.username.clone(), s.uid.clone()))
}

/// The arguments a plan is bound to: all but `dry_run` and `plan_id`.
fn plan_arguments(arguments: &Value) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != DRY_RUN_ARG && *k != PLAN_ID_ARG)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    }
}

/// Splits `plan_id` off a call's arguments (the tools never see it).
pub fn split_plan_id(arguments: &mut Value) -> Result<Option<String>, ToolError> {
    let Some(map) = arguments.as_object_mut() else {
        return Ok(None);
    };
    match map.remove(PLAN_ID_ARG) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => Ok(Some(id)),
        Some(_) => Err(ToolError::invalid(
            "plan_id must be the id string a dry run returned",
        )),
    }
}

/// Parts of a dry run's result that change without anyone changing what
/// the plan decides: messages arriving move retained counts and target
/// offsets. Everything else the dry run read is in the fingerprint.
fn moving_fields(tool: ToolName) -> &'static [&'static str] {
    match tool {
        ToolName::DeleteTopic => &["retained_messages"],
        ToolName::ResetGroupOffsets => &["after"],
        _ => &[],
    }
}

/// A hash of the state a dry run of `tool` read.
fn fingerprint(tool: ToolName, dry_run_result: &Value, cluster_id: Option<&str>) -> String {
    fn strip(v: &Value, moving: &[&str]) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !moving.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), strip(v, moving)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|i| strip(i, moving)).collect()),
            other => other.clone(),
        }
    }
    let stable = strip(dry_run_result, moving_fields(tool));
    // serde_json maps are ordered by key, so equal states hash equally.
    let mut hash = Sha256::new();
    hash.update(cluster_id.unwrap_or_default().as_bytes());
    hash.update([0]);
    hash.update(tool.as_str().as_bytes());
    hash.update([0]);
    hash.update(stable.to_string().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the state read again for an apply is still what the plan saw.
pub fn still_holds(
    planned: &str,
    tool: ToolName,
    fresh_dry_run: &Value,
    cluster_id: Option<&str>,
) -> bool {
    fingerprint(tool, fresh_dry_run, cluster_id) == planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject(name: &str) -> Subject {
        Subject {
            username: name.into(),
            uid: format!("uid-{name}"),
            groups: vec![],
            extra: Default::default(),
            signed_in: None,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_plan_is_bound_to_caller_tool_and_arguments_and_taken_once() {
        let plans = Plans::new(100);
        let args = json!({"topic": "t", "total": 4, "dry_run": true});
        let diff = json!({"topic": "t", "before": 2, "after": 4, "dry_run": true});
        let alice = subject("alice");
        let ticket = plans.make(
            Some(&alice),
            ToolName::CreatePartitions,
            &args,
            &diff,
            Some("c1"),
            HOUR,
        );
        let apply = json!({"topic": "t", "total": 4});

        let e = plans
            .take(
                &ticket.id,
                Some(&subject("bob")),
                ToolName::CreatePartitions,
                &apply,
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        let e = plans
            .take(
                &ticket.id,
                Some(&alice),
                ToolName::CreatePartitions,
                &json!({"topic": "t", "total": 5}),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = plans
            .take(&ticket.id, Some(&alice), ToolName::DeleteTopic, &apply)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);

        let planned = plans
            .take(&ticket.id, Some(&alice), ToolName::CreatePartitions, &apply)
            .unwrap();
        assert!(still_holds(
            &planned,
            ToolName::CreatePartitions,
            &diff,
            Some("c1")
        ));
        assert!(
            !still_holds(&planned, ToolName::CreatePartitions, &diff, Some("c2")),
            "another cluster"
        );
        assert!(!still_holds(
            &planned,
            ToolName::CreatePartitions,
            &json!({"topic": "t", "before": 3, "after": 4, "dry_run": true}),
            Some("c1")
        ));

        let e = plans
            .take(&ticket.id, Some(&alice), ToolName::CreatePartitions, &apply)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PlanExpired, "taken once");
        assert_eq!(
            plans
                .take("plan-unknown", None, ToolName::CreatePartitions, &apply)
                .unwrap_err()
                .code,
            ErrorCode::PlanExpired
        );
    }

    #[test]
    fn a_plan_expires() {
        let plans = Plans::new(100);
        let ticket = plans.make(
            None,
            ToolName::DeleteTopic,
            &json!({"topic": "t"}),
            &json!({}),
            None,
            Duration::from_millis(50),
        );
        std::thread::sleep(Duration::from_millis(120));
        let e = plans
            .take(
                &ticket.id,
                None,
                ToolName::DeleteTopic,
                &json!({"topic": "t"}),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PlanExpired);
    }

    #[test]
    fn counters_that_move_with_traffic_are_not_state() {
        let before =
            json!({"topic": "t", "partitions": 3, "retained_messages": 10, "dry_run": true});
        let after =
            json!({"topic": "t", "partitions": 3, "retained_messages": 99, "dry_run": true});
        assert_eq!(
            fingerprint(ToolName::DeleteTopic, &before, None),
            fingerprint(ToolName::DeleteTopic, &after, None)
        );
        let reset =
            |b: i64, a: i64| json!({"partitions": [{"partition": 0, "before": b, "after": a}]});
        assert_eq!(
            fingerprint(ToolName::ResetGroupOffsets, &reset(1, 5), None),
            fingerprint(ToolName::ResetGroupOffsets, &reset(1, 9), None)
        );
        assert_ne!(
            fingerprint(ToolName::ResetGroupOffsets, &reset(1, 5), None),
            fingerprint(ToolName::ResetGroupOffsets, &reset(2, 5), None)
        );
    }

    #[test]
    fn plan_id_is_split_off_and_checked() {
        let mut args = json!({"topic": "t", "plan_id": "plan-1"});
        assert_eq!(split_plan_id(&mut args).unwrap().as_deref(), Some("plan-1"));
        assert_eq!(args, json!({"topic": "t"}));
        assert!(split_plan_id(&mut json!({"plan_id": 7})).is_err());
        assert_eq!(split_plan_id(&mut json!({"topic": "t"})).unwrap(), None);
    }
}
