//! Which topics and consumer groups a server's callers may reach: the
//! namespace policy's ceiling, narrowed by the server's `spec.scope`, and
//! for each client with a scope of its own, narrowed again by that. What
//! a narrower scope asked for beyond its ceiling is cut, with the reason.
//! Pure, like the tool policy; the narrowing itself is the sidecar's
//! [`Scope::narrow`], so the sidecar and the operator share one meaning.

use mcp_kafka_sidecar::scope::{ClientScope, Scope};

use crate::build::names;
use crate::crd::McpKafkaServerSpec;
use crate::policy::Policy;

/// The scopes a server's sidecar enforces, and what was cut to get them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeDecision {
    /// The scope of the server's callers. None: unscoped (no policy ceiling
    /// and no scope in the spec), every topic and group.
    pub server: Option<Scope>,
    /// Clients with a scope of their own, by their ServiceAccount's username.
    pub clients: Vec<ClientScope>,
    /// What was asked for and not given, and why.
    pub cuts: Vec<String>,
}

/// `field`'s scope if every pattern in it can be used; else nothing at all
/// (an unusable pattern, which admission refuses, fails closed), and a cut
/// saying why.
fn usable(scope: &Scope, field: &str, cuts: &mut Vec<String>) -> Scope {
    match scope.problem(field) {
        None => scope.clone(),
        Some((at, problem)) => {
            cuts.push(format!(
                "{at}: {problem}; nothing is in this scope until it is fixed"
            ));
            Scope::default()
        }
    }
}

/// `user_prefix`: the username prefix of the server's identity provider,
/// when sign-in is wired (a client of one provider user is told apart by
/// `<prefix><user>`).
pub fn decide(
    policy: &Policy,
    namespace: &str,
    server: &str,
    spec: &McpKafkaServerSpec,
    user_prefix: Option<&str>,
) -> ScopeDecision {
    let client_scoped = spec.clients.iter().any(|c| c.scope.is_some());
    if policy.scope.is_none() && spec.scope.is_none() && !client_scoped {
        return ScopeDecision::default();
    }
    let mut cuts = Vec::new();
    let ceiling = match &policy.scope {
        Some(scope) => usable(scope, &format!("{} spec.scope", policy.source), &mut cuts),
        None => Scope::everything(),
    };
    let server_scope = match &spec.scope {
        Some(asked) => {
            let asked = usable(asked, "spec.scope", &mut cuts);
            let (scope, cut) = ceiling.narrow(&asked, &format!("the scope of {}", policy.source));
            cuts.extend(cut);
            scope
        }
        None => ceiling,
    };

    let mut clients: Vec<ClientScope> = Vec::new();
    let mut owners: Vec<&str> = Vec::new();
    for (i, client) in spec.clients.iter().enumerate() {
        let Some(asked) = &client.scope else {
            continue;
        };
        let mut client_cuts = Vec::new();
        let asked = usable(asked, &format!("spec.clients[{i}].scope"), &mut client_cuts);
        let (scope, cut) = server_scope.narrow(&asked, "the server's scope");
        client_cuts.extend(cut);
        // Admission lets a scoped client name one provider user and no
        // groups; its callers are told apart by that user's name.
        let (username, identity) = match client.users.as_slice() {
            [] if !client.groups.is_empty() => {
                cuts.push(format!(
                    "client {}: a client of groups has no scope of its own; it applies to no one",
                    client.name
                ));
                continue;
            }
            [] => {
                let service_account = names::client_service_account(server, client);
                (
                    names::service_account_username(namespace, &service_account),
                    format!("ServiceAccount {service_account}"),
                )
            }
            [user] => match user_prefix {
                Some(prefix) => (
                    crate::build::oidc::prefixed(prefix, user),
                    format!("user {user}"),
                ),
                None => {
                    cuts.push(format!(
                        "client {}: its scope applies to no one while sign-in is not wired",
                        client.name
                    ));
                    continue;
                }
            },
            _ => {
                cuts.push(format!(
                    "client {}: a scope needs exactly one user; it applies to no one",
                    client.name
                ));
                continue;
            }
        };
        match clients.iter().position(|c| c.username == username) {
            // Admission refuses two scoped clients on one ServiceAccount (or
            // user); the sidecar can tell them apart only by it, so its
            // callers get what both scopes admit.
            Some(at) => {
                let (both, _) = clients[at].scope.narrow(&scope, "");
                client_cuts.push(format!(
                    "shares {identity} with client {}: its callers get what both scopes admit",
                    owners[at]
                ));
                clients[at].scope = both;
            }
            None => {
                clients.push(ClientScope { username, scope });
                owners.push(&client.name);
            }
        }
        cuts.extend(
            client_cuts
                .into_iter()
                .map(|c| format!("client {}: {c}", client.name)),
        );
    }
    ScopeDecision {
        server: Some(server_scope),
        clients,
        cuts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::McpToolPolicySpec;
    use mcp_kafka_sidecar::scope::{NamePattern, NameScope};

    fn policy(scope: Option<&str>) -> Policy {
        let spec = McpToolPolicySpec {
            scope: scope.map(|s| serde_yaml::from_str(s).unwrap()),
            ..McpToolPolicySpec::default()
        };
        Policy::from_namespace("team-a", &spec)
    }

    /// A server's spec with `scope` (YAML or none) and `clients` (YAML list).
    fn spec(scope: Option<&str>, clients: &str) -> McpKafkaServerSpec {
        let mut yaml = format!(
            "{{environment: dev, kafka: {{bootstrapServers: ['k:9092']}}, tools: [list_topics], clients: {clients}"
        );
        if let Some(scope) = scope {
            yaml.push_str(&format!(", scope: {scope}"));
        }
        yaml.push('}');
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn scope(yaml: &str) -> Scope {
        serde_yaml::from_str(yaml).unwrap()
    }

    const CEILING: &str = "{topics: {allow: [{name: team-a., patternType: prefix}], deny: [{name: team-a.internal, patternType: prefix}]}, groups: {allow: [{name: team-a-, patternType: prefix}]}}";
    const REPORTING: &str = "{name: reporting, serviceAccountName: reporting, tools: [list_topics], scope: {topics: {allow: [{name: team-a.reports, patternType: prefix}, {name: x, patternType: prefix}]}}}";
    const LAPTOP: &str = "{name: laptop, issueToken: {}, tools: [list_topics], scope: {topics: {allow: [{name: team-a.orders}]}, groups: {allow: [{name: '*'}]}}}";

    #[test]
    fn a_ceiling_narrowed_by_the_server_then_by_each_client() {
        struct Case {
            what: &'static str,
            policy: Option<&'static str>,
            server: Option<&'static str>,
            clients: String,
            effective: Option<&'static str>,
            clients_get: Vec<(&'static str, &'static str)>,
            cuts: Vec<&'static str>,
        }
        let table = [
            Case {
                what: "nothing scoped anywhere: unscoped, as before scopes existed",
                policy: None,
                server: None,
                clients: "[{name: a, serviceAccountName: a, tools: [list_topics]}]".into(),
                effective: None,
                clients_get: vec![],
                cuts: vec![],
            },
            Case {
                what: "a ceiling and a server that asks for nothing: the ceiling as it is",
                policy: Some(CEILING),
                server: None,
                clients: "[]".into(),
                effective: Some(CEILING),
                clients_get: vec![],
                cuts: vec![],
            },
            Case {
                what: "a server asking for more than the policy allows",
                policy: Some(CEILING),
                server: Some(
                    "{topics: {allow: [{name: team-, patternType: prefix}, {name: payments}]}, groups: {allow: [{name: team-a-orders}]}}",
                ),
                clients: "[]".into(),
                effective: Some(
                    "{topics: {allow: [{name: team-a., patternType: prefix}], deny: [{name: team-a.internal, patternType: prefix}]}, groups: {allow: [{name: team-a-orders}]}}",
                ),
                clients_get: vec![],
                cuts: vec![
                    r#"topics prefix "team-": narrowed to prefix "team-a." by the scope of McpToolPolicy team-a/default"#,
                    r#"topics prefix "team-": the scope of McpToolPolicy team-a/default denies prefix "team-a.internal""#,
                    r#"topics literal "payments": outside the scope of McpToolPolicy team-a/default"#,
                ],
            },
            Case {
                what: "no ceiling: the server's own scope, nothing cut",
                policy: None,
                server: Some("{topics: {allow: [{name: orders}]}}"),
                clients: "[]".into(),
                effective: Some("{topics: {allow: [{name: orders}]}}"),
                clients_get: vec![],
                cuts: vec![],
            },
            Case {
                what: "clients narrow the ceiling further, named by their ServiceAccount",
                policy: Some(CEILING),
                server: None,
                clients: format!(
                    "[{REPORTING}, {LAPTOP}, {{name: plain, serviceAccountName: plain, tools: [list_topics]}}]"
                ),
                effective: Some(CEILING),
                clients_get: vec![
                    (
                        "system:serviceaccount:team-a:reporting",
                        "{topics: {allow: [{name: team-a.reports, patternType: prefix}], deny: [{name: team-a.internal, patternType: prefix}]}}",
                    ),
                    (
                        "system:serviceaccount:team-a:orders-mcp-client-laptop",
                        "{topics: {allow: [{name: team-a.orders}], deny: [{name: team-a.internal, patternType: prefix}]}, groups: {allow: [{name: team-a-, patternType: prefix}]}}",
                    ),
                ],
                cuts: vec![
                    r#"client reporting: topics prefix "x": outside the server's scope"#,
                    r#"client laptop: groups literal "*": narrowed to prefix "team-a-" by the server's scope"#,
                ],
            },
            Case {
                what: "no ceiling and no server scope, but a client scope: the server sees everything, the client its own",
                policy: None,
                server: None,
                clients: format!("[{REPORTING}]"),
                effective: Some("{topics: {allow: [{name: '*'}]}, groups: {allow: [{name: '*'}]}}"),
                clients_get: vec![(
                    "system:serviceaccount:team-a:reporting",
                    "{topics: {allow: [{name: team-a.reports, patternType: prefix}, {name: x, patternType: prefix}]}}",
                )],
                cuts: vec![],
            },
            Case {
                what: "a ceiling without groups: no group for anyone",
                policy: Some("{topics: {allow: [{name: '*'}]}}"),
                server: Some("{topics: {allow: [{name: a}]}, groups: {allow: [{name: g}]}}"),
                clients: "[]".into(),
                effective: Some("{topics: {allow: [{name: a}]}}"),
                clients_get: vec![],
                cuts: vec![
                    r#"groups literal "g": outside the scope of McpToolPolicy team-a/default"#,
                ],
            },
            Case {
                what: "an unusable pattern (admission refuses it) fails closed and says where",
                policy: Some(CEILING),
                server: Some("{topics: {allow: [{name: 'a*'}]}}"),
                clients: "[]".into(),
                // The ceiling's deny stays: it changes nothing here, and narrowing never drops one.
                effective: Some("{topics: {deny: [{name: team-a.internal, patternType: prefix}]}}"),
                clients_get: vec![],
                cuts: vec![
                    "spec.scope.topics.allow[0]: a name may hold only a-z, A-Z, 0-9, '.', '_' and '-' (found '*'); `*` alone is every name; nothing is in this scope until it is fixed",
                ],
            },
            Case {
                what: "an unusable ceiling leaves nothing in scope",
                policy: Some("{topics: {allow: [{name: '*', patternType: prefix}]}}"),
                server: Some("{topics: {allow: [{name: a}]}}"),
                clients: "[]".into(),
                effective: Some("{}"),
                clients_get: vec![],
                cuts: vec![
                    "McpToolPolicy team-a/default spec.scope.topics.allow[0]: a prefix may hold only a-z, A-Z, 0-9, '.', '_' and '-' (found '*'); `*` alone is every name; nothing is in this scope until it is fixed",
                    r#"topics literal "a": outside the scope of McpToolPolicy team-a/default"#,
                ],
            },
            Case {
                what: "two scoped clients on one ServiceAccount (admission refuses it): what both admit",
                policy: None,
                server: Some("{topics: {allow: [{name: a, patternType: prefix}]}}"),
                clients: "[{name: one, serviceAccountName: sa, tools: [list_topics], scope: {topics: {allow: [{name: a1, patternType: prefix}]}}}, {name: two, serviceAccountName: sa, tools: [list_topics], scope: {topics: {allow: [{name: a12}]}}}]".into(),
                effective: Some("{topics: {allow: [{name: a, patternType: prefix}]}}"),
                clients_get: vec![(
                    "system:serviceaccount:team-a:sa",
                    "{topics: {allow: [{name: a12}]}}",
                )],
                cuts: vec![
                    "client two: shares ServiceAccount sa with client one: its callers get what both scopes admit",
                ],
            },
        ];
        for case in table {
            let got = decide(
                &policy(case.policy),
                "team-a",
                "orders",
                &spec(case.server, &case.clients),
                Some("oidc:"),
            );
            assert_eq!(got.server, case.effective.map(scope), "{}", case.what);
            let clients: Vec<(String, Scope)> = got
                .clients
                .iter()
                .map(|c| (c.username.clone(), c.scope.clone()))
                .collect();
            let expected: Vec<(String, Scope)> = case
                .clients_get
                .iter()
                .map(|(u, s)| (u.to_string(), scope(s)))
                .collect();
            assert_eq!(clients, expected, "{}", case.what);
            assert_eq!(got.cuts, case.cuts, "{}", case.what);
        }
    }

    #[test]
    fn what_the_server_was_given_is_what_the_sidecar_decides_on() {
        let got = decide(
            &policy(Some(CEILING)),
            "team-a",
            "orders",
            &spec(
                Some("{topics: {allow: [{name: team-, patternType: prefix}, {name: payments}]}}"),
                "[]",
            ),
            None,
        );
        let topics: &NameScope = &got.server.as_ref().unwrap().topics;
        for (name, admitted) in [
            ("team-a.orders", true),
            ("team-a.internal.x", false),
            ("team-b.orders", false),
            ("payments", false),
        ] {
            assert_eq!(topics.admits(name), admitted, "{name}");
        }
        assert_eq!(topics.allow, vec![NamePattern::prefix("team-a.")]);
    }

    #[test]
    fn a_client_of_one_provider_user_is_told_apart_by_the_prefixed_username() {
        let yaml = "[{name: alice, users: [alice], tools: [list_topics], scope: {topics: {allow: [{name: a1}]}}}, {name: ops, groups: [ops], tools: [list_topics]}]";
        let got = decide(
            &policy(None),
            "team-a",
            "orders",
            &spec(None, yaml),
            Some("sso:"),
        );
        let clients: Vec<(&str, Scope)> = got
            .clients
            .iter()
            .map(|c| (c.username.as_str(), c.scope.clone()))
            .collect();
        assert_eq!(
            clients,
            vec![("sso:alice", scope("{topics: {allow: [{name: a1}]}}"))]
        );
        assert!(got.cuts.is_empty(), "{:?}", got.cuts);

        // Admission refuses a scope on a client of groups: were one let
        // through, it would be nobody's (no ServiceAccount is made up for it).
        let groups = "[{name: ops, groups: [ops], tools: [list_topics], scope: {topics: {allow: [{name: a1}]}}}]";
        let got = decide(
            &policy(None),
            "team-a",
            "orders",
            &spec(None, groups),
            Some("sso:"),
        );
        assert!(got.clients.is_empty());
        assert_eq!(
            got.cuts,
            vec!["client ops: a client of groups has no scope of its own; it applies to no one"]
        );

        // Sign-in not wired (no provider resolved): the scope is nobody's,
        // and status says so; no username is made up for it.
        let got = decide(&policy(None), "team-a", "orders", &spec(None, yaml), None);
        assert!(got.clients.is_empty());
        assert_eq!(
            got.cuts,
            vec!["client alice: its scope applies to no one while sign-in is not wired"]
        );
    }
}
