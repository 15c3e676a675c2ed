//! Scopes on arbitrary patterns and names: the membership decision and the
//! narrowing the operator computes must agree. For every name, a ceiling
//! narrowed by a narrower scope admits it exactly when both do; a pattern
//! that covers another matches all it matches; an intersection matches
//! what both patterns match; a denial names a deny pattern that matches.
//!
//! Input: three parts split by a line `--`: the ceiling's patterns, the
//! narrower's, then names, a line each. A pattern line is `A` or `D`
//! (allow, deny), `L` or `P` (literal, prefix), then the name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::scope::{Exclusion, NamePattern, NameScope, Scope};

fn name_scope(part: &str) -> NameScope {
    let mut scope = NameScope::default();
    for line in part.lines() {
        let mut chars = line.chars();
        let (Some(list), Some(kind)) = (chars.next(), chars.next()) else {
            continue;
        };
        let name = chars.as_str();
        let pattern = match kind {
            'P' => NamePattern::prefix(name),
            _ => NamePattern::literal(name),
        };
        match list {
            'D' => scope.deny.push(pattern),
            _ => scope.allow.push(pattern),
        }
    }
    scope
}

fuzz_target!(|text: &str| {
    let mut parts = text.splitn(3, "\n--\n");
    let ceiling = name_scope(parts.next().unwrap_or_default());
    let narrower = name_scope(parts.next().unwrap_or_default());
    let patterns: Vec<&NamePattern> = [&ceiling, &narrower]
        .into_iter()
        .flat_map(|s| s.allow.iter().chain(&s.deny))
        .collect();
    // The given names, and each pattern's name with its neighbours (one
    // character less and more), where the edges are.
    let mut names: Vec<String> = parts
        .next()
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    for p in &patterns {
        names.push(p.name.clone());
        names.push(format!("{}x", p.name));
        let mut shorter = p.name.clone();
        shorter.pop();
        names.push(shorter);
    }
    let both = |n: &str| ceiling.admits(n) && narrower.admits(n);
    let scope = |topics: &NameScope| Scope {
        topics: topics.clone(),
        groups: topics.clone(),
    };
    let (narrowed, _cuts) = scope(&ceiling).narrow(&scope(&narrower), "the policy");
    for name in &names {
        assert_eq!(narrowed.topics.admits(name), both(name), "{name:?}");
        assert_eq!(narrowed.groups.admits(name), both(name), "{name:?}");
        if let Err(Exclusion::Denied(rule)) = ceiling.decide(name) {
            assert!(rule.matches(name) && ceiling.deny.contains(&rule));
        }
        for p in &patterns {
            for q in &patterns {
                if p.covers(q) && q.matches(name) {
                    assert!(p.matches(name), "{p} covers {q} but not {name:?}");
                }
                let meet = p.intersect(q).is_some_and(|m| m.matches(name));
                assert_eq!(
                    meet,
                    p.matches(name) && q.matches(name),
                    "{p} ∩ {q} on {name:?}"
                );
            }
        }
    }
});
