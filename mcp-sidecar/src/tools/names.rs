//! The topics and consumer groups a call names, for the scope check that
//! runs before the tool does (`tools::check_scope`). Each tool's argument
//! type says what it names here, next to the others, so that a new field
//! naming a topic is one line away from being checked.

use super::{acls, consume, groups, metrics, mutate, observe, schemas};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::scope::{NameScope, Scope};

/// What one call's arguments name.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Named<'a> {
    pub topics: Vec<&'a str>,
    pub groups: Vec<&'a str>,
    /// Schema Registry subjects: each is its topic's under the
    /// TopicNameStrategy (`schemas::subject_topic`).
    pub subjects: Vec<String>,
}

impl<'a> Named<'a> {
    fn topic(topic: &'a str) -> Self {
        Self {
            topics: vec![topic],
            ..Self::default()
        }
    }

    fn subject(subject: &str) -> Self {
        Self {
            subjects: vec![subject.to_string()],
            ..Self::default()
        }
    }

    fn group(group: &'a str) -> Self {
        Self {
            groups: vec![group],
            ..Self::default()
        }
    }
}

pub(crate) trait Names {
    fn named(&self) -> Named<'_>;
}

/// Refuses a call naming a topic or group outside `scope`, with the rule
/// that keeps it out. Nothing has asked Kafka yet, so the answer is the
/// same whether the topic exists or not (as Kafka answers an unauthorized
/// describe).
pub(crate) fn check(scope: &Scope, named: &Named) -> ToolResult<()> {
    let kinds: [(&str, &NameScope, &[&str]); 2] = [
        ("topic", &scope.topics, &named.topics),
        ("consumer group", &scope.groups, &named.groups),
    ];
    for (kind, names, asked) in kinds {
        for name in asked {
            if let Err(rule) = names.decide(name) {
                return Err(ToolError::new(
                    ErrorCode::PermissionDenied,
                    format!("{kind} {name:?} is outside this server's scope ({rule})"),
                ));
            }
        }
    }
    for subject in &named.subjects {
        let Some(topic) = schemas::subject_topic(subject) else {
            return Err(ToolError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "subject {subject:?} is outside this server's scope (it names no topic as <topic>-key or <topic>-value, the TopicNameStrategy a scoped server admits subjects by)"
                ),
            ));
        };
        if let Err(rule) = scope.topics.decide(topic) {
            return Err(ToolError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "subject {subject:?} is outside this server's scope (its topic {topic:?}: {rule})"
                ),
            ));
        }
    }
    Ok(())
}

impl Names for observe::ClusterStatusArgs {
    fn named(&self) -> Named<'_> {
        Named::default()
    }
}

impl Names for observe::ListBrokersArgs {
    fn named(&self) -> Named<'_> {
        Named::default()
    }
}

/// A listing names nothing: it shows only what is in scope.
impl Names for observe::ListTopicsArgs {
    fn named(&self) -> Named<'_> {
        Named::default()
    }
}

impl Names for observe::TopicArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

/// A broker's configs belong to no tenant.
impl Names for observe::DescribeConfigsArgs {
    fn named(&self) -> Named<'_> {
        match self.resource_type {
            observe::ResourceType::Topic => Named::topic(&self.name),
            observe::ResourceType::Broker => Named::default(),
        }
    }
}

impl Names for observe::FetchOffsetsArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

impl Names for consume::ConsumeArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

impl Names for groups::ListGroupsArgs {
    fn named(&self) -> Named<'_> {
        Named::default()
    }
}

impl Names for groups::GroupArgs {
    fn named(&self) -> Named<'_> {
        Named::group(&self.group_id)
    }
}

impl Names for groups::LagArgs {
    fn named(&self) -> Named<'_> {
        Named {
            topics: self.topic.as_deref().into_iter().collect(),
            groups: vec![&self.group_id],
            ..Named::default()
        }
    }
}

impl Names for groups::DeleteGroupArgs {
    fn named(&self) -> Named<'_> {
        Named::group(&self.group_id)
    }
}

impl Names for groups::ResetOffsetsArgs {
    fn named(&self) -> Named<'_> {
        Named {
            topics: vec![&self.topic],
            groups: vec![&self.group_id],
            ..Named::default()
        }
    }
}

impl Names for mutate::CreateTopicArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

impl Names for mutate::DeleteTopicArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

impl Names for mutate::CreatePartitionsArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

impl Names for mutate::UpdateTopicConfigArgs {
    fn named(&self) -> Named<'_> {
        Named::topic(&self.topic)
    }
}

/// With a schema, the subject it names too (the topic's by default).
impl Names for mutate::PublishArgs {
    fn named(&self) -> Named<'_> {
        let mut named = Named::topic(&self.topic);
        for (part, choice) in [("key", &self.key_schema), ("value", &self.value_schema)] {
            if let Some(choice) = choice {
                named.subjects.push(choice.subject_for(&self.topic, part));
            }
        }
        named
    }
}

/// A listing names nothing: it shows only what is in scope.
impl Names for schemas::ListSubjectsArgs {
    fn named(&self) -> Named<'_> {
        Named::default()
    }
}

/// By id it names no subject: the tool shows only the subjects in scope
/// that hold it, and refuses one held by none.
impl Names for schemas::GetSchemaArgs {
    fn named(&self) -> Named<'_> {
        self.subject
            .as_deref()
            .map(Named::subject)
            .unwrap_or_default()
    }
}

impl Names for schemas::CheckCompatibilityArgs {
    fn named(&self) -> Named<'_> {
        Named::subject(&self.subject)
    }
}

impl Names for schemas::RegisterSchemaArgs {
    fn named(&self) -> Named<'_> {
        Named::subject(&self.subject)
    }
}

impl Names for schemas::DeleteSubjectArgs {
    fn named(&self) -> Named<'_> {
        Named::subject(&self.subject)
    }
}

impl Names for acls::DescribeAclsArgs {
    fn named(&self) -> Named<'_> {
        let (topic, group) = self.topic_or_group();
        Named {
            topics: topic.into_iter().collect(),
            groups: group.into_iter().collect(),
            ..Named::default()
        }
    }
}

/// Without a topic it names none: its topic list shows only what is in scope.
impl Names for metrics::ClusterMetricsArgs {
    fn named(&self) -> Named<'_> {
        Named {
            topics: self.topic.as_deref().into_iter().collect(),
            ..Named::default()
        }
    }
}
