//! Argument checks made before Kafka is asked, so that bad input gets a
//! precise `INVALID_ARGUMENT` instead of a broker error or a hang.

use crate::error::{ToolError, ToolResult};

/// Kafka's own rule for topic names (see [`crate::config::topic_name_problem`]).
pub fn topic_name(name: &str) -> ToolResult<()> {
    match crate::config::topic_name_problem(name) {
        Some(problem) => Err(ToolError::invalid(problem)),
        None => Ok(()),
    }
}

/// Group IDs may be almost anything in Kafka; refuse only what is surely a
/// mistake (empty, control characters, absurd length).
pub fn group_id(group: &str) -> ToolResult<()> {
    if group.is_empty() || group.len() > 255 {
        return Err(ToolError::invalid("group id must be 1 to 255 characters"));
    }
    if group.chars().any(char::is_control) {
        return Err(ToolError::invalid(
            "group id must not contain control characters",
        ));
    }
    Ok(())
}

/// A caller's count, capped: `None` takes the default; above the cap is an
/// error that names the cap (the caller asked for more than it may have).
pub fn capped(what: &str, asked: Option<usize>, default: usize, cap: usize) -> ToolResult<usize> {
    match asked {
        None => Ok(default.min(cap)),
        Some(0) => Err(ToolError::invalid(format!("{what} must be at least 1"))),
        Some(n) if n > cap => Err(ToolError::new(
            crate::error::ErrorCode::LimitExceeded,
            format!("{what} {n} exceeds this server's limit of {cap}"),
        )),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["orders", "a.b_c-d", &"x".repeat(249)] {
            assert!(topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../etc",
            "a b",
            "tab\there",
            "ünïcode",
            &"x".repeat(250),
        ] {
            assert_eq!(
                topic_name(bad).unwrap_err().code,
                ErrorCode::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn counts_are_capped_with_a_clear_error() {
        assert_eq!(capped("max_messages", None, 10, 100).unwrap(), 10);
        assert_eq!(capped("max_messages", Some(100), 10, 100).unwrap(), 100);
        assert_eq!(
            capped("max_messages", Some(101), 10, 100).unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        assert_eq!(
            capped("max_messages", Some(0), 10, 100).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn group_ids_refuse_control_characters() {
        assert!(group_id("orders-consumers").is_ok());
        assert!(group_id("").is_err());
        assert!(group_id("a\u{0}b").is_err());
    }
}
