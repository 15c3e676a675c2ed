//! Topic and group scopes: which Kafka topics and consumer groups a server
//! (and each of its clients) may see and touch. Patterns are written as
//! Kafka's ACLs and Strimzi's `KafkaUser` write them: a literal name (`*`
//! is every name) or a prefix, matched as a plain string, never a regex.
//!
//! Here: the types (the sidecar config's and the CRDs'), the one function
//! that decides membership ([`NameScope::decide`]), and the intersection the
//! operator uses to narrow a policy's ceiling by a server's and a client's
//! own scope ([`Scope::narrow`]). A scope with no `allow` holds nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kafka's limit on topic names (and this server's on group names in scope).
pub const MAX_NAME_LEN: usize = 249;

/// The literal name that stands for every name, as in Kafka's ACLs.
pub const WILDCARD: &str = "*";

/// A topic or group name pattern.
// The CRDs check at admission what [`NamePattern::problem`] checks here,
// each mistake with a message of its own (a schema `pattern` would answer
// each with the regex). The length bound also keeps the apiserver's cost
// estimate of these rules, over every pattern of every client's scope,
// within its budget.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.name != '*' || !has(self.patternType) || self.patternType == 'literal'",
    "message": "`*` (every name) is a literal pattern; a prefix is the start of a name, e.g. `team-a.`"
}]))]
pub struct NamePattern {
    /// A name (`orders`), `*` for every name, or with `patternType: prefix`
    /// the start of a name (`team-a.`). 1 to 249 characters of
    /// `a-z A-Z 0-9 . _ -`; matched case-sensitively, as Kafka does.
    #[schemars(length(min = 1, max = 249))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == '*' || self.matches('^[a-zA-Z0-9._-]*$')",
        "message": "a name or prefix may hold only a-z, A-Z, 0-9, '.', '_' and '-'; `*` alone (patternType literal) is every name"
    }]))]
    pub name: String,
    /// `literal` (default): the name itself; `prefix`: every name that starts with it.
    #[serde(default, skip_serializing_if = "PatternType::is_literal")]
    pub pattern_type: PatternType,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PatternType {
    #[default]
    Literal,
    Prefix,
}

impl PatternType {
    fn is_literal(&self) -> bool {
        *self == PatternType::Literal
    }
}

impl NamePattern {
    pub fn literal(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pattern_type: PatternType::Literal,
        }
    }

    pub fn prefix(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pattern_type: PatternType::Prefix,
        }
    }

    /// Every name.
    pub fn any() -> Self {
        Self::literal(WILDCARD)
    }

    fn is_any(&self) -> bool {
        self.pattern_type == PatternType::Literal && self.name == WILDCARD
    }

    /// Whether `name` matches: the same string, or one starting with the
    /// prefix. Nothing is folded: `Orders` is not `orders`.
    pub fn matches(&self, name: &str) -> bool {
        match self.pattern_type {
            _ if self.is_any() => true,
            PatternType::Literal => self.name == name,
            PatternType::Prefix => name.starts_with(&self.name),
        }
    }

    /// Whether every name `other` matches, this matches too.
    pub fn covers(&self, other: &NamePattern) -> bool {
        if self.is_any() {
            return true;
        }
        if other.is_any() {
            return false;
        }
        match (self.pattern_type, other.pattern_type) {
            (PatternType::Literal, PatternType::Literal) => self.name == other.name,
            (PatternType::Literal, PatternType::Prefix) => false,
            (PatternType::Prefix, _) => other.name.starts_with(&self.name),
        }
    }

    /// The names both match, as one pattern (patterns of this kind are
    /// closed under intersection), or `None` when they share none.
    pub fn intersect(&self, other: &NamePattern) -> Option<NamePattern> {
        if self.covers(other) {
            Some(other.clone())
        } else if other.covers(self) {
            Some(self.clone())
        } else {
            None
        }
    }

    /// Why this pattern cannot be used, or `None` (what the CRD schema
    /// checks at admission, checked again on the sidecar's config).
    pub fn problem(&self) -> Option<String> {
        if self.is_any() {
            return None;
        }
        let what = match self.pattern_type {
            PatternType::Literal => "a name",
            PatternType::Prefix => "a prefix",
        };
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Some(format!(
                "{what} must have 1 to {MAX_NAME_LEN} characters (got {})",
                self.name.len()
            ));
        }
        if let Some(c) = self
            .name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Some(format!(
                "{what} may hold only a-z, A-Z, 0-9, '.', '_' and '-' (found {c:?}); `*` alone is every name"
            ));
        }
        None
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pattern_type {
            PatternType::Literal => write!(f, "literal {:?}", self.name),
            PatternType::Prefix => write!(f, "prefix {:?}", self.name),
        }
    }
}

/// The names of one kind in scope: those matching an `allow` pattern and no
/// `deny` pattern (deny wins). No `allow`: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameScope {
    /// The names in scope: each pattern a literal name (`*`: every name) or a prefix.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub allow: Vec<NamePattern>,
    /// Names kept out even when allowed (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub deny: Vec<NamePattern>,
}

/// Why a name is out of scope: the rule an audit record and an error name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// It matches this `deny` pattern.
    Denied(NamePattern),
    /// It matches no `allow` pattern.
    NotAllowed,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::Denied(pattern) => write!(f, "denied by {pattern}"),
            Exclusion::NotAllowed => write!(f, "matches no allowed pattern"),
        }
    }
}

impl NameScope {
    /// Every name.
    pub fn everything() -> Self {
        Self {
            allow: vec![NamePattern::any()],
            deny: Vec::new(),
        }
    }

    /// Whether `name` is in scope, and if not, which rule keeps it out. The
    /// one function that decides membership.
    pub fn decide(&self, name: &str) -> Result<(), Exclusion> {
        if let Some(deny) = self.deny.iter().find(|p| p.matches(name)) {
            return Err(Exclusion::Denied(deny.clone()));
        }
        if self.allow.iter().any(|p| p.matches(name)) {
            Ok(())
        } else {
            Err(Exclusion::NotAllowed)
        }
    }

    pub fn admits(&self, name: &str) -> bool {
        self.decide(name).is_ok()
    }

    /// The names both scopes admit: each pair of allow patterns intersected
    /// (patterns another one covers dropped), every deny of either kept.
    /// With what `narrower` asked for and did not get, and why.
    fn narrow(&self, narrower: &NameScope, kind: &str, ceiling: &str) -> (NameScope, Vec<String>) {
        let mut allow: Vec<NamePattern> = Vec::new();
        let mut cuts = Vec::new();
        for asked in &narrower.allow {
            let granted: Vec<NamePattern> = self
                .allow
                .iter()
                .filter_map(|p| p.intersect(asked))
                .collect();
            if granted.is_empty() {
                cuts.push(format!("{kind} {asked}: outside {ceiling}"));
            } else if !granted.contains(asked) {
                let to: Vec<String> = granted.iter().map(ToString::to_string).collect();
                cuts.push(format!(
                    "{kind} {asked}: narrowed to {} by {ceiling}",
                    to.join(", ")
                ));
            }
            for deny in self.deny.iter().filter(|d| asked.intersect(d).is_some()) {
                cuts.push(format!("{kind} {asked}: {ceiling} denies {deny}"));
            }
            allow.extend(granted);
        }
        allow.sort();
        allow.dedup();
        let minimal: Vec<NamePattern> = allow
            .iter()
            .filter(|p| !allow.iter().any(|q| q != *p && q.covers(p)))
            .cloned()
            .collect();
        let mut deny: Vec<NamePattern> = self.deny.iter().chain(&narrower.deny).cloned().collect();
        deny.sort();
        deny.dedup();
        (
            NameScope {
                allow: minimal,
                deny,
            },
            cuts,
        )
    }

    fn problem(&self, field: &str) -> Option<(String, String)> {
        for (list, patterns) in [("allow", &self.allow), ("deny", &self.deny)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Some(problem) = pattern.problem() {
                    return Some((format!("{field}.{list}[{i}]"), problem));
                }
            }
        }
        None
    }
}

/// The topics and consumer groups in scope. Each kind left out holds
/// nothing: a scope that names topics but no groups shows no groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    /// The topics in scope. Left out: none.
    #[serde(default)]
    pub topics: NameScope,
    /// The consumer groups in scope. Left out: none.
    #[serde(default)]
    pub groups: NameScope,
}

impl Scope {
    /// Every topic and group (what an unscoped server sees).
    pub fn everything() -> Self {
        Self {
            topics: NameScope::everything(),
            groups: NameScope::everything(),
        }
    }

    /// This scope narrowed by `narrower` (a server's scope narrowing its
    /// policy's ceiling, a client's narrowing its server's): what both
    /// admit, and what `narrower` asked for beyond this, each with why.
    /// `ceiling` names this scope in those reasons ("the policy").
    pub fn narrow(&self, narrower: &Scope, ceiling: &str) -> (Scope, Vec<String>) {
        let (topics, mut cuts) = self.topics.narrow(&narrower.topics, "topics", ceiling);
        let (groups, group_cuts) = self.groups.narrow(&narrower.groups, "groups", ceiling);
        cuts.extend(group_cuts);
        (Scope { topics, groups }, cuts)
    }

    /// The first unusable pattern, as (field, problem), under `field`.
    pub fn problem(&self, field: &str) -> Option<(String, String)> {
        self.topics
            .problem(&format!("{field}.topics"))
            .or_else(|| self.groups.problem(&format!("{field}.groups")))
    }
}

/// A client's own, narrower scope: callers authenticated as `username` (its
/// ServiceAccount, `system:serviceaccount:NAMESPACE:NAME`) get it instead
/// of the server's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientScope {
    pub username: String,
    pub scope: Scope,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(allow: &[NamePattern], deny: &[NamePattern]) -> NameScope {
        NameScope {
            allow: allow.to_vec(),
            deny: deny.to_vec(),
        }
    }

    #[test]
    fn tricky_names() {
        let long = "a".repeat(249);
        let orders = scope(&[NamePattern::literal("orders")], &[]);
        let team = scope(
            &[NamePattern::prefix("team-a.")],
            &[NamePattern::prefix("team-a.secret")],
        );
        let long_prefix = scope(&[NamePattern::prefix(&long[..248])], &[]);
        let table: [(&NameScope, &str, bool); 17] = [
            (&orders, "orders", true),
            (&orders, "orders-secret", false),
            (&orders, "orders.", false),
            (&orders, "Orders", false),
            (&orders, "order", false),
            (&orders, "", false),
            (&team, "team-a.orders", true),
            (&team, "team-a.", true),
            (&team, "team-a", false),
            (&team, "team-a_orders", false),
            (&team, "TEAM-A.orders", false),
            (&team, "team-b.orders", false),
            (&team, "team-a.secrets", false),
            (&team, "team-a.secret", false),
            (&long_prefix, &long, true),
            (&NameScope::default(), "orders", false),
            (&NameScope::everything(), &long, true),
        ];
        for (scope, name, admitted) in table {
            assert_eq!(scope.admits(name), admitted, "{name:?} in {scope:?}");
        }
        assert_eq!(
            team.decide("team-a.secret-x"),
            Err(Exclusion::Denied(NamePattern::prefix("team-a.secret")))
        );
        assert_eq!(team.decide("team-b.x"), Err(Exclusion::NotAllowed));
        // `.` and `_` are different characters here, as in Kafka's ACLs
        // (Kafka only warns that they collide in metric names).
        assert!(!scope(&[NamePattern::literal("a.b")], &[]).admits("a_b"));
    }

    #[test]
    fn patterns_that_cannot_be_used() {
        for bad in [
            NamePattern::literal(""),
            NamePattern::prefix(""),
            NamePattern::prefix("*"),
            NamePattern::literal("a*"),
            NamePattern::literal("a b"),
            NamePattern::literal("../etc"),
            NamePattern::literal("a".repeat(250)),
            NamePattern::prefix("é"),
        ] {
            assert!(bad.problem().is_some(), "{bad:?} accepted");
        }
        for good in [
            NamePattern::any(),
            NamePattern::literal("a".repeat(249)),
            NamePattern::prefix("team-a."),
            NamePattern::literal("..."),
        ] {
            assert_eq!(good.problem(), None, "{good:?}");
        }
    }

    #[test]
    fn narrowing_keeps_what_both_admit_and_says_what_was_cut() {
        let ceiling = Scope {
            topics: scope(
                &[NamePattern::prefix("team-a.")],
                &[NamePattern::prefix("team-a.internal")],
            ),
            groups: scope(&[NamePattern::prefix("team-a-")], &[]),
        };
        let asked = Scope {
            topics: scope(
                &[
                    NamePattern::prefix("team-a.orders"),
                    NamePattern::prefix("team-"),
                    NamePattern::literal("payments"),
                    NamePattern::any(),
                ],
                &[NamePattern::literal("team-a.orders-old")],
            ),
            groups: NameScope::default(),
        };
        let (got, cuts) = ceiling.narrow(&asked, "the policy");
        // team-a.orders* is inside team-a.*, which `team-` and `*` narrow to.
        assert_eq!(got.topics.allow, vec![NamePattern::prefix("team-a.")]);
        assert_eq!(
            got.topics.deny,
            vec![
                NamePattern::prefix("team-a.internal"),
                NamePattern::literal("team-a.orders-old"),
            ]
        );
        assert_eq!(
            got.groups,
            NameScope::default(),
            "no groups asked, none given"
        );
        assert_eq!(
            cuts,
            vec![
                r#"topics prefix "team-": narrowed to prefix "team-a." by the policy"#,
                r#"topics prefix "team-": the policy denies prefix "team-a.internal""#,
                r#"topics literal "payments": outside the policy"#,
                r#"topics literal "*": narrowed to prefix "team-a." by the policy"#,
                r#"topics literal "*": the policy denies prefix "team-a.internal""#,
            ]
        );
        for name in ["team-a.orders", "team-a.x"] {
            assert!(got.topics.admits(name), "{name}");
        }
        for name in [
            "team-a.internal-x",
            "team-a.orders-old",
            "payments",
            "team-b.x",
        ] {
            assert!(!got.topics.admits(name), "{name}");
        }
    }

    #[test]
    fn narrowing_by_everything_changes_nothing() {
        let ceiling = Scope {
            topics: scope(
                &[NamePattern::prefix("a."), NamePattern::literal("b")],
                &[NamePattern::literal("a.x")],
            ),
            groups: scope(&[NamePattern::literal("g")], &[]),
        };
        let (got, cuts) = Scope::everything().narrow(&ceiling, "the policy");
        assert_eq!(got, ceiling);
        assert!(cuts.is_empty(), "{cuts:?}");
        let (got, _) = ceiling.narrow(&Scope::everything(), "the policy");
        assert_eq!(got, ceiling);
    }
}
