//! The Schema Registry tools: list subjects, read a schema (by subject and
//! version, or by id), check a proposed schema's compatibility; register a
//! schema and delete a subject, two-phase like every mutation (the dry run
//! compiles the schema here, asks the registry whether it is compatible
//! and whether it is registered already; an incompatible one is refused
//! there, before any plan exists).
//!
//! Scopes: a subject is its topic's under Confluent's TopicNameStrategy
//! (`<topic>-key`, `<topic>-value`); see `subject_topic`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ToolContext;
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::schema::registry::{Reference, SchemaById, segment};
use crate::schema::{Codec, Format, SchemaRegistry};

/// The topic a subject belongs to under the TopicNameStrategy, if its name
/// follows it. A subject named otherwise (RecordNameStrategy's
/// `com.acme.Order`) belongs to no topic: a scoped caller may not see or
/// touch it, an unscoped one may.
pub fn subject_topic(subject: &str) -> Option<&str> {
    subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
        .filter(|t| crate::config::topic_name_problem(t).is_none())
}

fn registry(ctx: &ToolContext) -> ToolResult<&SchemaRegistry> {
    ctx.schema_registry.as_deref().ok_or_else(|| {
        ToolError::not_found("this server has no schema registry (schemaRegistry is not set)")
    })
}

fn subject_name(subject: &str) -> ToolResult<()> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(ToolError::invalid(
            "subject must be 1 to 255 characters without control characters",
        ));
    }
    Ok(())
}

/// Whether the caller's scope admits `subject` (listings filter by it).
fn in_scope(ctx: &ToolContext, subject: &str) -> bool {
    subject_visible(ctx.scope.as_deref(), subject)
}

/// Whether `scope` (none: everything) admits `subject`.
pub fn subject_visible(scope: Option<&crate::scope::Scope>, subject: &str) -> bool {
    match scope {
        None => true,
        Some(scope) => subject_topic(subject).is_some_and(|t| scope.topics.admits(t)),
    }
}

/// A registry format from a tool argument (default Avro, as the registry's).
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    fn format(self) -> Format {
        match self {
            Self::Avro => Format::Avro,
            Self::Protobuf => Format::Protobuf,
            Self::Json => Format::Json,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSubjectsArgs {
    /// Only subjects starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Include soft-deleted subjects.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SubjectList {
    pub subjects: Vec<String>,
    /// Subjects that matched (before the cap).
    pub total: usize,
    pub truncated: bool,
    /// Subjects outside this caller's scope were left out.
    pub scoped: bool,
}

pub async fn list_subjects(ctx: &ToolContext, args: ListSubjectsArgs) -> ToolResult<SubjectList> {
    let registry = registry(ctx)?;
    let path = if args.deleted {
        "/subjects?deleted=true"
    } else {
        "/subjects"
    };
    let mut subjects: Vec<String> = registry.get_json(path).await?;
    subjects
        .retain(|s| args.prefix.as_deref().is_none_or(|p| s.starts_with(p)) && in_scope(ctx, s));
    subjects.sort();
    let total = subjects.len();
    let cap = ctx.limits.max_list_items;
    subjects.truncate(cap);
    Ok(SubjectList {
        subjects,
        total,
        truncated: total > cap,
        scoped: ctx.scope.is_some(),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSchemaArgs {
    /// A subject (with `version`, default its latest) ...
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub version: Option<i32>,
    /// ... or a schema id.
    #[serde(default)]
    pub id: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SchemaDescription {
    pub id: u32,
    pub schema_type: String,
    /// The schema's text as registered.
    pub schema: String,
    pub references: Vec<Reference>,
    /// Where it is registered: the subject asked for, or (by id) each
    /// subject version in this caller's scope that holds it.
    pub registered_as: Vec<SubjectVersionRef>,
    /// The subject's versions, when a subject was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<i32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SubjectVersionRef {
    pub subject: String,
    pub version: i32,
}

pub async fn get_schema(ctx: &ToolContext, args: GetSchemaArgs) -> ToolResult<SchemaDescription> {
    let registry = registry(ctx)?;
    let described = match (&args.subject, args.id) {
        (Some(subject), None) => {
            subject_name(subject)?;
            let found = registry.subject_version(subject, args.version).await?;
            let versions: Vec<i32> = registry
                .get_json(&format!("/subjects/{}/versions", segment(subject)))
                .await?;
            SchemaDescription {
                id: found.id,
                schema_type: Format::from_registry(found.schema_type.as_deref())?
                    .registry_name()
                    .into(),
                schema: found.schema,
                references: found.references,
                registered_as: vec![SubjectVersionRef {
                    subject: found.subject,
                    version: found.version,
                }],
                versions: Some(versions),
            }
        }
        (None, Some(id)) if args.version.is_none() => {
            let raw: SchemaById = registry.get_json(&format!("/schemas/ids/{id}")).await?;
            // A registry without this endpoint answers 404; one that
            // fails must not look like "held by no subject in scope".
            let placements: Vec<SubjectVersionRef> = match registry
                .get_json(&format!("/schemas/ids/{id}/versions"))
                .await
            {
                Ok(placements) => placements,
                Err(e) if e.code == ErrorCode::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let visible: Vec<SubjectVersionRef> = placements
                .into_iter()
                .filter(|p| in_scope(ctx, &p.subject))
                .collect();
            // A scoped caller learns nothing of a schema none of whose
            // subjects it may see, as if it did not exist.
            if ctx.scope.is_some() && visible.is_empty() {
                return Err(ToolError::new(
                    ErrorCode::PermissionDenied,
                    format!("schema id {id} is registered under no subject in this server's scope"),
                ));
            }
            SchemaDescription {
                id,
                schema_type: Format::from_registry(raw.schema_type.as_deref())?
                    .registry_name()
                    .into(),
                schema: raw.schema,
                references: raw.references,
                registered_as: visible,
                versions: None,
            }
        }
        _ => {
            return Err(ToolError::invalid(
                "name a subject (and optionally a version), or an id alone",
            ));
        }
    };
    if described.schema.len() > ctx.limits.max_consume_bytes {
        return Err(ToolError::new(
            ErrorCode::LimitExceeded,
            format!(
                "the schema is {} bytes; this server answers at most {} (limits.maxConsumeBytes)",
                described.schema.len(),
                ctx.limits.max_consume_bytes
            ),
        ));
    }
    Ok(described)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCompatibilityArgs {
    pub subject: String,
    /// The proposed schema's text (Avro JSON, `.proto` text, JSON Schema).
    pub schema: String,
    #[serde(default)]
    pub schema_type: SchemaType,
    /// Schemas it references, by name.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// The version to check against; default: the subject's latest, or
    /// all versions the subject's compatibility level says (as the
    /// registry does when registering).
    #[serde(default)]
    pub version: Option<i32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Compatibility {
    pub subject: String,
    pub is_compatible: bool,
    /// The subject's compatibility level (BACKWARD, FULL_TRANSITIVE...), if the registry says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The registry's reasons, when incompatible.
    pub messages: Vec<String>,
    /// The subject's latest version (none: a new subject, which admits any schema).
    pub latest_version: Option<i32>,
}

/// The registry's compatibility answer; a new subject is compatible.
async fn compatibility(
    registry: &SchemaRegistry,
    subject: &str,
    body: &Value,
    version: Option<i32>,
) -> ToolResult<Compatibility> {
    #[derive(Deserialize)]
    struct Answer {
        is_compatible: bool,
        #[serde(default)]
        messages: Vec<Value>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Level {
        compatibility_level: Option<String>,
    }
    let latest = match registry.subject_version(subject, None).await {
        Ok(found) => Some(found.version),
        Err(e) if e.code == ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let level = registry
        .get_json::<Level>(&format!(
            "/config/{}?defaultToGlobal=true",
            segment(subject)
        ))
        .await
        .ok()
        .and_then(|l| l.compatibility_level);
    if latest.is_none() {
        return Ok(Compatibility {
            subject: subject.to_string(),
            is_compatible: true,
            level,
            messages: vec!["the subject has no versions yet: any schema is compatible".into()],
            latest_version: None,
        });
    }
    let against = version.map_or("latest".to_string(), |v| v.to_string());
    let path = format!(
        "/compatibility/subjects/{}/versions/{against}?verbose=true",
        segment(subject)
    );
    let answer = registry.call(http::Method::POST, &path, Some(body)).await?;
    let answer: Answer = serde_json::from_slice(&answer).map_err(|e| {
        crate::schema::registry::unavailable(format!(
            "the registry's compatibility answer is not the API's JSON: {e}"
        ))
    })?;
    Ok(Compatibility {
        subject: subject.to_string(),
        is_compatible: answer.is_compatible,
        level,
        messages: answer
            .messages
            .into_iter()
            .map(|m| match m {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        latest_version: latest,
    })
}

/// The registry's JSON for a schema (Avro is its default type).
fn schema_body(schema: &str, schema_type: SchemaType, references: &[Reference]) -> Value {
    let mut body = json!({ "schema": schema });
    if !matches!(schema_type, SchemaType::Avro) {
        body["schemaType"] = json!(schema_type.format().registry_name());
    }
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    body
}

/// Compiles a proposed schema here (references from the registry), so a
/// schema this server could not decode or encode with is refused with the
/// compiler's reason.
async fn compile(
    registry: &SchemaRegistry,
    schema: &str,
    schema_type: SchemaType,
    references: &[Reference],
) -> ToolResult<()> {
    let resolved = registry.resolve_references(references).await?;
    Codec::compile(schema_type.format(), schema, &resolved)
        .map(|_| ())
        .map_err(|why| {
            ToolError::invalid(format!(
                "the schema is not valid {}: {why}",
                schema_type.format().registry_name()
            ))
        })
}

pub async fn check_compatibility(
    ctx: &ToolContext,
    args: CheckCompatibilityArgs,
) -> ToolResult<Compatibility> {
    let registry = registry(ctx)?;
    subject_name(&args.subject)?;
    compile(registry, &args.schema, args.schema_type, &args.references).await?;
    let body = schema_body(&args.schema, args.schema_type, &args.references);
    compatibility(registry, &args.subject, &body, args.version).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSchemaArgs {
    pub subject: String,
    /// The schema's text (Avro JSON, `.proto` text, JSON Schema).
    pub schema: String,
    #[serde(default)]
    pub schema_type: SchemaType,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// dry_run: true compiles the schema, checks its compatibility with the
    /// subject and whether it is registered already; nothing is registered.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RegisterSchemaResult {
    pub subject: String,
    pub schema_type: String,
    /// The subject's compatibility level, if the registry says.
    pub level: Option<String>,
    /// The subject's latest version before this registration.
    pub latest_version: Option<i32>,
    /// The schema's id if this subject holds it already (registering it
    /// again changes nothing).
    pub already_registered: Option<SubjectVersionWithId>,
    /// The id and version registered (absent in a dry run).
    pub registered: Option<SubjectVersionWithId>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectVersionWithId {
    pub id: u32,
    pub version: i32,
}

/// The schema's id and version under `subject`, if registered there.
async fn lookup(
    registry: &SchemaRegistry,
    subject: &str,
    body: &Value,
) -> ToolResult<Option<SubjectVersionWithId>> {
    let path = format!("/subjects/{}", segment(subject));
    match registry.call(http::Method::POST, &path, Some(body)).await {
        Ok(answer) => serde_json::from_slice(&answer).map(Some).map_err(|e| {
            crate::schema::registry::unavailable(format!(
                "the registry's lookup answer is not the API's JSON: {e}"
            ))
        }),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn register_schema(
    ctx: &ToolContext,
    args: RegisterSchemaArgs,
) -> ToolResult<RegisterSchemaResult> {
    let registry = registry(ctx)?;
    subject_name(&args.subject)?;
    compile(registry, &args.schema, args.schema_type, &args.references).await?;
    let body = schema_body(&args.schema, args.schema_type, &args.references);
    let already = lookup(registry, &args.subject, &body).await?;
    let compatible = compatibility(registry, &args.subject, &body, None).await?;
    if already.is_none() && !compatible.is_compatible {
        return Err(ToolError::conflict(format!(
            "the schema is not compatible with subject {:?} (level {}): {}; nothing was registered",
            args.subject,
            compatible.level.as_deref().unwrap_or("unknown"),
            compatible.messages.join("; ")
        )));
    }
    let registered = if args.dry_run {
        None
    } else {
        let path = format!("/subjects/{}/versions", segment(&args.subject));
        registry
            .call(http::Method::POST, &path, Some(&body))
            .await?;
        // The registry answers the id; the version comes from a lookup.
        lookup(registry, &args.subject, &body).await?
    };
    Ok(RegisterSchemaResult {
        subject: args.subject,
        schema_type: args.schema_type.format().registry_name().into(),
        level: compatible.level,
        latest_version: compatible.latest_version,
        already_registered: already,
        registered,
        dry_run: args.dry_run,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSubjectArgs {
    pub subject: String,
    /// Also delete permanently (a soft delete first, as the registry
    /// requires); a permanently deleted schema's id may no longer decode
    /// old records.
    #[serde(default)]
    pub permanent: bool,
    /// dry_run: true lists the versions that would be deleted.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteSubjectResult {
    pub subject: String,
    /// The versions deleted (in a dry run: that would be).
    pub versions: Vec<i32>,
    pub permanent: bool,
    pub dry_run: bool,
    pub deleted: bool,
}

pub async fn delete_subject(
    ctx: &ToolContext,
    args: DeleteSubjectArgs,
) -> ToolResult<DeleteSubjectResult> {
    let registry = registry(ctx)?;
    subject_name(&args.subject)?;
    let subject = segment(&args.subject);
    // Soft-deleted versions count for a permanent delete.
    let listing = if args.permanent {
        format!("/subjects/{subject}/versions?deleted=true")
    } else {
        format!("/subjects/{subject}/versions")
    };
    let versions: Vec<i32> = registry.get_json(&listing).await?;
    if !args.dry_run {
        match registry
            .call(http::Method::DELETE, &format!("/subjects/{subject}"), None)
            .await
        {
            Ok(_) => {}
            // Soft-deleted already: only a permanent delete has work left.
            Err(e) if e.code == ErrorCode::NotFound && args.permanent => {}
            Err(e) => return Err(e),
        }
        if args.permanent {
            registry
                .call(
                    http::Method::DELETE,
                    &format!("/subjects/{subject}?permanent=true"),
                    None,
                )
                .await?;
        }
    }
    Ok(DeleteSubjectResult {
        subject: args.subject,
        versions,
        permanent: args.permanent,
        dry_run: args.dry_run,
        deleted: !args.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_its_topics_under_the_topic_name_strategy() {
        assert_eq!(subject_topic("orders-value"), Some("orders"));
        assert_eq!(subject_topic("team-a.orders-key"), Some("team-a.orders"));
        assert_eq!(subject_topic("com.acme.Order"), None);
        assert_eq!(subject_topic("-value"), None, "no topic name");
        assert_eq!(subject_topic("a b-value"), None, "not a topic name");
    }
}
