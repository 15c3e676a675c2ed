//! Tool errors: a stable code, a message a person understands, and whether a
//! retry can help. Returned to MCP clients as tool errors (`isError: true`)
//! whose text starts with the code, with the same fields in `_meta` (see
//! `server::error_result`).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Serialize;

/// The stable error codes of the tool surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Fenced,
    KafkaUnavailable,
    Timeout,
    Conflict,
    PlanExpired,
    LimitExceeded,
    /// A Kafka error this server has no better code for; the message says which.
    KafkaError,
    /// The metrics source (Prometheus) did not answer in time, could not
    /// be reached, or answered an error: only `cluster_metrics` fails so.
    MetricsUnavailable,
    /// The Schema Registry did not answer in time, could not be reached,
    /// or failed (5xx): only calls that need it fail so (a peek falls back
    /// to showing bytes instead).
    SchemaRegistryUnavailable,
    Internal,
    /// A job (a tool call taken from Kafka) whose bearer token is missing,
    /// expired or not for this server.
    Unauthenticated,
    /// A mutation job that a worker started and never answered (it
    /// stopped): it may or may not have changed Kafka, and is not run
    /// again. Check the state before submitting it anew.
    OutcomeUnknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        Self::InvalidArgument,
        Self::NotFound,
        Self::PermissionDenied,
        Self::Fenced,
        Self::KafkaUnavailable,
        Self::Timeout,
        Self::Conflict,
        Self::PlanExpired,
        Self::LimitExceeded,
        Self::KafkaError,
        Self::MetricsUnavailable,
        Self::Internal,
        Self::Unauthenticated,
        Self::OutcomeUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotFound => "NOT_FOUND",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::Fenced => "FENCED",
            Self::KafkaUnavailable => "KAFKA_UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::Conflict => "CONFLICT",
            Self::PlanExpired => "PLAN_EXPIRED",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::KafkaError => "KAFKA_ERROR",
            Self::MetricsUnavailable => "METRICS_UNAVAILABLE",
            Self::SchemaRegistryUnavailable => "SCHEMA_REGISTRY_UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
        }
    }

    /// Whether the same call may succeed later without changing it, by
    /// default. `LIMIT_EXCEEDED` is not: asking above a cap fails the same
    /// way every time; the rate limit and busy peeks, which do pass, say
    /// so with `ToolError::retry_later`.
    pub fn retriable(self) -> bool {
        matches!(
            self,
            Self::KafkaUnavailable
                | Self::Timeout
                | Self::MetricsUnavailable
                | Self::SchemaRegistryUnavailable
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ToolError {
    pub code: ErrorCode,
    pub message: String,
    pub retriable: bool,
}

impl ToolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retriable: code.retriable(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    /// Marks an error that the same call gets only for now (a rate limit, a
    /// busy pool): a retry after a wait can succeed.
    pub fn retry_later(mut self) -> Self {
        self.retriable = true;
        self
    }

    /// Maps a Kafka failure of `what` (e.g. "describe topic orders") to a code.
    pub fn from_kafka(what: &str, err: &KafkaError) -> Self {
        match err.rdkafka_error_code() {
            Some(code) => Self::from_kafka_code(what, code),
            None => Self::new(ErrorCode::KafkaError, format!("{what}: {err}")),
        }
    }

    pub fn from_kafka_code(what: &str, code: RDKafkaErrorCode) -> Self {
        use RDKafkaErrorCode as K;
        let mapped = match code {
            K::UnknownTopicOrPartition
            | K::UnknownTopic
            | K::UnknownPartition
            | K::GroupIdNotFound => ErrorCode::NotFound,
            K::TopicAlreadyExists
            | K::NonEmptyGroup
            | K::RebalanceInProgress
            | K::UnknownMemberId
            | K::IllegalGeneration => ErrorCode::Conflict,
            K::InvalidPartitions
            | K::InvalidReplicationFactor
            | K::InvalidConfig
            | K::InvalidTopic
            | K::InvalidRequest
            | K::PolicyViolation
            | K::InvalidReplicaAssignment
            | K::MessageSizeTooLarge
            | K::InvalidRecord
            | K::InvalidTimestamp
            | K::InvalidArgument
            | K::InvalidGroupId => ErrorCode::InvalidArgument,
            // Kafka's ACLs refused this server's principal (`what` names
            // the resource), or the broker refused its credentials.
            K::TopicAuthorizationFailed
            | K::GroupAuthorizationFailed
            | K::ClusterAuthorizationFailed
            | K::TransactionalIdAuthorizationFailed
            | K::DelegationTokenAuthorizationFailed
            | K::SaslAuthenticationFailed
            | K::Authentication => ErrorCode::PermissionDenied,
            K::OperationTimedOut | K::RequestTimedOut | K::MessageTimedOut | K::TimedOutQueue => {
                ErrorCode::Timeout
            }
            K::BrokerTransportFailure
            | K::AllBrokersDown
            | K::NetworkException
            | K::BrokerNotAvailable
            | K::LeaderNotAvailable
            | K::NotController
            | K::CoordinatorNotAvailable
            | K::NotCoordinator
            | K::CoordinatorLoadInProgress
            | K::Resolve => ErrorCode::KafkaUnavailable,
            _ => ErrorCode::KafkaError,
        };
        Self::new(mapped, format!("{what}: {code}"))
    }
}

/// Tools' results: a value or a [`ToolError`].
pub type ToolResult<T> = Result<T, ToolError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_map_to_stable_codes_with_retriability() {
        let e = ToolError::from_kafka_code("create topic a", RDKafkaErrorCode::TopicAlreadyExists);
        assert_eq!((e.code, e.retriable), (ErrorCode::Conflict, false));
        let e = ToolError::from_kafka_code("list topics", RDKafkaErrorCode::AllBrokersDown);
        assert_eq!((e.code, e.retriable), (ErrorCode::KafkaUnavailable, true));
        let e = ToolError::from_kafka_code(
            "describe topic b",
            RDKafkaErrorCode::UnknownTopicOrPartition,
        );
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(
            e.to_string().starts_with("NOT_FOUND: describe topic b"),
            "{e}"
        );
    }

    #[test]
    fn every_authorization_failure_is_permission_denied_and_final() {
        use RDKafkaErrorCode as K;
        for code in [
            K::TopicAuthorizationFailed,
            K::GroupAuthorizationFailed,
            K::ClusterAuthorizationFailed,
            K::TransactionalIdAuthorizationFailed,
            K::DelegationTokenAuthorizationFailed,
        ] {
            let e = ToolError::from_kafka_code("describe topic \"team-b.x\"", code);
            assert_eq!(
                (e.code, e.retriable),
                (ErrorCode::PermissionDenied, false),
                "{code:?}"
            );
            assert!(e.message.contains("\"team-b.x\""), "{e}");
        }
    }

    #[test]
    fn a_cap_is_final_and_a_rate_limit_passes() {
        let cap = ToolError::new(ErrorCode::LimitExceeded, "max_messages 101 exceeds 100");
        assert!(!cap.retriable, "the same call fails the same way: {cap}");
        assert!(cap.retry_later().retriable);
    }

    #[test]
    fn codes_serialize_as_screaming_snake_case() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::KafkaUnavailable,
            ErrorCode::PlanExpired,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
