//! The MCP handler: lists the enabled tools and resources, and runs every
//! tool call through one path (`call_as`): rate limit, authorization,
//! environment rules and fence (`admit`), then two-phase plans and the audit
//! sink's check for mutations (`execute`), then one audit record.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, MetaObject,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::audit::{AuditRecord, Auditor, Caller, KafkaSink};
use crate::auth::{Authorizer, Callers, Refusal, Subject, TokenCheck};
use crate::compat::{CompatAnswer, CompatTool};
use crate::config::{MutationRule, SidecarConfig, ToolNameSet};
use crate::error::{ErrorCode, ToolError};
use crate::kafka::Kafka;
use crate::metrics::Metrics;
use crate::plan::{self, Plans};
use crate::prometheus::Prometheus;
use crate::rate::CallRate;
use crate::schema::SchemaRegistry;
use crate::scope::Scope;
use crate::tool_name::ToolName;
use crate::tools::{self, ToolContext};

/// What the server runs with now; replaced as a whole on config reload, so
/// one call sees one consistent config.
pub struct Runtime {
    pub config: SidecarConfig,
    pub kafka: Arc<Kafka>,
    pub rate: Arc<CallRate>,
    /// The durable audit copy, when `audit.kafkaTopic` is set.
    pub audit_sink: Option<Arc<KafkaSink>>,
    /// `cluster_metrics`' source, when `metrics.prometheus` is set.
    pub prometheus: Option<Arc<Prometheus>>,
    /// The Schema Registry, when `schemaRegistry` is set.
    pub schema_registry: Option<Arc<SchemaRegistry>>,
}

impl Runtime {
    /// Checks that this build can serve the config, and connects to Kafka
    /// (reusing `kafka` when the connection settings did not change, and the
    /// callers' rate buckets when the limits did not).
    pub fn start(config: SidecarConfig, reuse: Option<&Runtime>) -> anyhow::Result<Runtime> {
        let kafka = match reuse {
            Some(current) if current.config.kafka == config.kafka => Arc::clone(&current.kafka),
            _ => {
                let kafka = Kafka::connect(&config.kafka, &client_id(&config))?;
                kafka.spawn_probe();
                kafka
            }
        };
        let rate = match reuse {
            Some(current) if current.rate.enforces(&config.limits) => Arc::clone(&current.rate),
            _ => Arc::new(CallRate::new(&config.limits)),
        };
        let prometheus = match (reuse, &config.metrics) {
            (_, None) => None,
            (Some(current), Some(_)) if current.config.metrics == config.metrics => {
                current.prometheus.clone()
            }
            (_, Some(metrics)) => metrics
                .prometheus
                .as_ref()
                .map(Prometheus::new)
                .transpose()?,
        };
        // A registry whose settings did not change keeps its cache of
        // compiled schemas (ids are immutable).
        let schema_registry = match (reuse, &config.schema_registry) {
            (_, None) => None,
            (Some(current), Some(_))
                if current.config.schema_registry == config.schema_registry =>
            {
                current.schema_registry.clone()
            }
            (_, Some(registry)) => Some(SchemaRegistry::new(registry)?),
        };
        let audit_sink = config
            .audit
            .kafka_topic
            .clone()
            .map(|topic| Arc::new(KafkaSink::new(Arc::clone(&kafka), topic)));
        Ok(Runtime {
            config,
            kafka,
            rate,
            audit_sink,
            prometheus,
            schema_registry,
        })
    }

    /// Takes one call from the caller's bucket: per authenticated username,
    /// one bucket for all callers of a server without authentication.
    fn admit_caller(&self, subject: Option<&Arc<Subject>>) -> Result<(), ToolError> {
        self.rate.admit(subject.map_or("", |s| s.username.as_str()))
    }
}

/// The Kafka client.id: which sidecar made a request, in broker logs.
pub fn client_id(config: &SidecarConfig) -> String {
    match &config.server.namespace {
        Some(ns) => format!("mcp-kafka-sidecar/{ns}/{}", config.server.name),
        None => format!("mcp-kafka-sidecar/{}", config.server.name),
    }
}

/// Shared by every MCP session.
#[derive(Clone)]
pub struct KafkaMcp {
    runtime: Arc<RwLock<Arc<Runtime>>>,
    pub metrics: Arc<Metrics>,
    /// Who checks callers (Kubernetes, or nobody with `auth.mode: none`).
    callers: Callers,
    pub auditor: Arc<Auditor>,
    /// Open two-phase plans (in memory: see `plan`).
    plans: Arc<Plans>,
}

impl KafkaMcp {
    /// A server without authentication (`auth.mode: none`: dev on loopback).
    pub fn new(runtime: Runtime, metrics: Arc<Metrics>) -> Self {
        Self::with_callers(runtime, metrics, None)
    }

    fn with_callers(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        authorizer: Option<Authorizer>,
    ) -> Self {
        let plans = Arc::new(Plans::new(runtime.config.plans.max_open));
        let callers = Callers::new(runtime.config.auth.mode, authorizer.map(Arc::new));
        Self {
            runtime: Arc::new(RwLock::new(Arc::new(runtime))),
            metrics,
            callers,
            auditor: Arc::new(Auditor::to_stdout()),
            plans,
        }
    }

    /// Audit records elsewhere than stdout (stdio mode: stdout carries MCP).
    pub fn with_auditor(self, auditor: Auditor) -> Self {
        Self {
            auditor: Arc::new(auditor),
            ..self
        }
    }

    /// A server whose callers Kubernetes authenticates and authorizes.
    pub fn with_authorizer(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        authorizer: Authorizer,
    ) -> Self {
        Self::with_callers(runtime, metrics, Some(authorizer))
    }

    /// The `/mcp` guard's state: who checks callers, and for which audience.
    pub fn token_check(&self) -> TokenCheck {
        let config = &self.runtime().config;
        TokenCheck::new(
            self.callers.clone(),
            config.auth.audience_for(&config.server),
            config
                .auth
                .oidc
                .as_ref()
                .map(crate::auth::oidc::challenge_parameters),
            Arc::clone(&self.metrics),
        )
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    pub fn replace_runtime(&self, runtime: Runtime) {
        let mut slot = self
            .runtime
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(runtime);
    }

    /// Runs one tool call without a caller (a server without authentication).
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, ToolError> {
        self.call_as(None, &CallInfo::default(), name, args).await
    }

    /// Whether `subject` may call `tool` here: always with `auth.mode: none`;
    /// otherwise what the SubjectAccessReview says. Fails closed.
    async fn authorize(
        &self,
        rt: &Runtime,
        subject: Option<&Arc<Subject>>,
        tool: ToolName,
    ) -> Result<(), ToolError> {
        let authorizer = match &self.callers {
            Callers::Anyone => return Ok(()),
            Callers::Nobody => {
                return Err(ToolError::new(
                    ErrorCode::PermissionDenied,
                    "this server has no authorizer for auth.mode kubernetes",
                ));
            }
            Callers::Kubernetes(authorizer) => authorizer,
        };
        let server = &rt.config.server;
        let Some(subject) = subject else {
            return Err(ToolError::new(
                ErrorCode::PermissionDenied,
                "the call carries no authenticated caller",
            ));
        };
        match authorizer.may_call(subject, server, tool).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ToolError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} may not call {tool} on McpKafkaServer {}/{} (no RBAC grant of verb {tool} on mcpkafkaservers/tools)",
                    subject.username,
                    server.namespace.as_deref().unwrap_or_default(),
                    server.name
                ),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed; refusing the call");
                let mut err = ToolError::new(
                    ErrorCode::PermissionDenied,
                    "authorization could not be checked now; try again",
                );
                err.retriable = true;
                Err(err)
            }
        }
    }

    /// The tools `subject` may call now (RBAC and the environment's rules).
    pub async fn tools_for(&self, subject: Option<&Arc<Subject>>) -> Vec<ToolName> {
        let rt = self.runtime();
        let now = jiff::Timestamp::now();
        let usable =
            rt.config.tools.iter().filter(|t| {
                rt.config.enables(**t) && rt.config.environment_allows(**t, now).is_ok()
            });
        let checks = usable.map(|t| {
            let rt = &rt;
            async move { self.authorize(rt, subject, *t).await.ok().map(|_| *t) }
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Runs one tool call: the single path every call takes. Every call,
    /// allowed or denied, leaves one audit record and one count in the
    /// call metrics.
    ///
    /// That holds when the client goes away mid-call too: rmcp (3.9) runs
    /// each request's handler in a task of its own (`serve_inner` in its
    /// `src/service.rs` hands it to `spawn_service_task`, a `tokio::spawn`
    /// whose handle it drops), so a client that hangs up drops the HTTP
    /// request's future, not this one. rmcp then cancels the request's
    /// `RequestContext::ct`, which this path does not watch: a change to
    /// Kafka that was started is finished and audited, not cut halfway
    /// (e2e/tests/python/test_sidecar_mcp.py hangs up on calls to check).
    pub async fn call_as(
        &self,
        subject: Option<&Arc<Subject>>,
        request: &CallInfo,
        name: &str,
        args: Value,
    ) -> Result<Value, ToolError> {
        self.call_via(subject, request, name, &Via::Native, args)
            .await
    }

    /// The call path of [`call_as`](Self::call_as), for a call that came
    /// `via` a tool name, a resource or a compat tool.
    async fn call_via(
        &self,
        subject: Option<&Arc<Subject>>,
        request: &CallInfo,
        name: &str,
        via: &Via,
        mut args: Value,
    ) -> Result<Value, ToolError> {
        let started = Instant::now();
        let rt = self.runtime();
        let plan_id = plan::split_plan_id(&mut args);
        let audited_args = crate::audit::redact(&args);
        let dry_run = plan::is_dry_run(&args);
        let mut outcome = Outcome {
            plan_id: plan_id.clone().ok().flatten(),
            ..Outcome::default()
        };
        let result = match self
            .admit(&rt, subject, name, via, &args, dry_run, plan_id)
            .await
        {
            Err(refusal) => Err(refusal),
            Ok(admitted) => {
                outcome.admitted = true;
                self.execute(&rt, subject, admitted, args, dry_run, &mut outcome)
                    .await
            }
        };
        let record = AuditRecord {
            called_as: via.called_as().map(CompatTool::as_str),
            decision: if outcome.admitted { "allow" } else { "deny" },
            reason: result
                .as_ref()
                .err()
                .filter(|_| !outcome.admitted)
                .map(|e| e.message.clone()),
            dry_run,
            plan_id: outcome.plan_id.clone(),
            diff: result
                .as_ref()
                .ok()
                .filter(|_| outcome.mutation)
                .map(crate::audit::redact),
            ..audit_record(&rt, subject, request, name, audited_args, &result, started)
        };
        // A change to Kafka waits for its record; other calls do not.
        self.audit(&rt, &record, outcome.changed_kafka).await;
        let code = result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
        self.metrics.record_call(name, code, started.elapsed());
        result
    }

    /// Writes one audit record (stdout, and the Kafka sink when there is
    /// one): awaited when `wait` (a change to Kafka), else sent on.
    async fn audit(&self, rt: &Runtime, record: &AuditRecord, wait: bool) {
        let line = self.auditor.record(record);
        if let (Some(sink), Some(line)) = (&rt.audit_sink, line) {
            let (sink, metrics, key) = (
                Arc::clone(sink),
                Arc::clone(&self.metrics),
                rt.config.server.name.clone(),
            );
            let deliver = async move { deliver_to_sink(&sink, &metrics, &key, &line).await };
            if wait {
                deliver.await;
            } else {
                tokio::spawn(deliver);
            }
        }
    }

    /// Leaves the record of a job that was answered without running through
    /// [`call_as`](Self::call_as): refused before it (no usable token, a
    /// passed deadline, a malformed record) or not run again (a duplicate,
    /// an outcome made unknown by a crash). One audit record and one count,
    /// as `call_as` leaves for each call; `outcome` is what the job was told
    /// (`ok` or an error code).
    pub async fn audit_unrun(
        &self,
        subject: Option<&Arc<Subject>>,
        request: &CallInfo,
        name: &str,
        args: &Value,
        outcome: &str,
        reason: String,
    ) {
        let started = Instant::now();
        let rt = self.runtime();
        let record = AuditRecord {
            decision: "deny",
            reason: Some(reason),
            dry_run: plan::is_dry_run(args),
            outcome: outcome.to_string(),
            ..audit_record(
                &rt,
                subject,
                request,
                name,
                crate::audit::redact(args),
                &Ok(Value::Null),
                started,
            )
        };
        self.audit(&rt, &record, false).await;
        self.metrics.record_call(name, outcome, started.elapsed());
    }

    /// The caller a bearer token stands for, checked as the `/mcp` guard
    /// checks an HTTP caller's (TokenReview for this server's audience,
    /// within the limits on unseen tokens): for callers that bring their
    /// token another way than HTTP (jobs). `None` on a server without
    /// authentication, whatever the token.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
    ) -> Result<Option<Arc<Subject>>, ToolError> {
        let authorizer = match &self.callers {
            Callers::Anyone => return Ok(None),
            Callers::Nobody => {
                return Err(ToolError::new(
                    ErrorCode::Unauthenticated,
                    "this server has no authenticator for auth.mode kubernetes",
                ));
            }
            Callers::Kubernetes(authorizer) => authorizer,
        };
        let Some(token) = token else {
            return Err(ToolError::new(
                ErrorCode::Unauthenticated,
                "a bearer token is required (the authorization header)",
            ));
        };
        let config = &self.runtime().config;
        let audience = config.auth.audience_for(&config.server);
        authorizer
            .authenticate(token, &audience, None)
            .await
            .map(Some)
            .map_err(|refusal| match refusal {
                Refusal::Missing | Refusal::Invalid => ToolError::new(
                    ErrorCode::Unauthenticated,
                    format!("the token is not valid for this server's audience {audience:?} (expired, revoked, or minted for another audience)"),
                ),
                Refusal::Unverifiable => ToolError::new(
                    ErrorCode::Unauthenticated,
                    "the token could not be verified now",
                )
                .retry_later(),
                Refusal::TooMany(wait) => ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "too many tokens this server has not seen; retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                )
                .retry_later(),
            })
    }

    /// Whether this call may run: a known, enabled tool (by a name the
    /// server answers to); the caller's rate (before the apiserver is asked);
    /// RBAC; arguments that translate (compat tools); the topics and groups
    /// they name in the caller's scope; the environment's rules; the
    /// cluster-ID fence.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        rt: &Runtime,
        subject: Option<&Arc<Subject>>,
        name: &str,
        via: &Via,
        args: &Value,
        dry_run: bool,
        plan_id: Result<Option<String>, ToolError>,
    ) -> Result<Admitted, ToolError> {
        let tool: ToolName = name
            .parse()
            .ok()
            .filter(|t| rt.config.enables(*t) && via.may_use(&rt.config))
            .ok_or_else(|| {
                ToolError::not_found(format!("tool {name:?} is not available on this server"))
            })?;
        rt.admit_caller(subject)?;
        self.authorize(rt, subject, tool).await?;
        if let Via::Untranslatable(_, refusal) = via {
            return Err(refusal.clone());
        }
        let scope = rt
            .config
            .scope_for(subject.map(|s| s.username.as_str()))
            .map(|scope| Arc::new(scope.clone()));
        if let Some(scope) = &scope {
            tools::check_scope(tool, scope, args)?;
        }
        let plan_id = plan_id?;
        check_environment(&rt.config, tool, dry_run, plan_id.is_some())?;
        rt.kafka.fence()?;
        Ok(Admitted {
            tool,
            plan_id,
            scope,
        })
    }

    /// Runs an admitted call. Mutations: a dry run makes a plan; an apply
    /// that names a plan re-reads the state and refuses if it changed; a
    /// change to Kafka needs the audit sink (when configured) to be up.
    async fn execute(
        &self,
        rt: &Runtime,
        subject: Option<&Arc<Subject>>,
        admitted: Admitted,
        args: Value,
        dry_run: bool,
        outcome: &mut Outcome,
    ) -> Result<Value, ToolError> {
        let tool = admitted.tool;
        if !tool.is_mutation() {
            return self.run(rt, &admitted, args).await;
        }
        outcome.mutation = true;
        let caller = subject.map(|s| s.as_ref());
        let cluster_id = rt.kafka.cluster_id();
        if dry_run {
            let mut diff = self.run(rt, &admitted, args.clone()).await?;
            let ttl = Duration::from_secs(rt.config.plans.ttl_seconds);
            let ticket = self
                .plans
                .make(caller, tool, &args, &diff, cluster_id.as_deref(), ttl);
            outcome.plan_id = Some(ticket.id.clone());
            if let Value::Object(map) = &mut diff {
                map.insert(
                    plan::PLAN_FIELD.into(),
                    serde_json::to_value(ticket).unwrap_or_default(),
                );
            }
            return Ok(diff);
        }
        if let Some(id) = &admitted.plan_id {
            let planned = self.plans.take(id, caller, tool, &args)?;
            let fresh = self
                .run(rt, &admitted, plan::as_dry_run(&args))
                .await
                .map_err(|e| {
                    if e.retriable {
                        e
                    } else {
                        ToolError::conflict(format!(
                            "the cluster changed since plan {id}: {}; plan again",
                            e.message
                        ))
                    }
                })?;
            if !plan::still_holds(&planned, tool, &fresh, cluster_id.as_deref()) {
                return Err(ToolError::conflict(format!(
                    "the state {tool} depends on changed since plan {id} (now: {fresh}); nothing was changed, plan again"
                )));
            }
        }
        if let Some(sink) = &rt.audit_sink {
            sink.check().await.map_err(|why| {
                ToolError::new(ErrorCode::KafkaUnavailable, format!("the audit sink cannot take records ({why}); changes are refused until it can"))
            })?;
        }
        outcome.changed_kafka = true;
        let result = self.run(rt, &admitted, args).await;
        // Failed or not, Kafka may have changed: the next read asks it.
        rt.kafka.forget_metadata();
        result
    }

    async fn run(
        &self,
        rt: &Runtime,
        admitted: &Admitted,
        args: Value,
    ) -> Result<Value, ToolError> {
        let tool = admitted.tool;
        let ctx = ToolContext {
            kafka: Arc::clone(&rt.kafka),
            limits: rt.config.limits.clone(),
            scope: admitted.scope.clone(),
            prometheus: rt.prometheus.clone(),
            schema_registry: rt.schema_registry.clone(),
        };
        // Every call ends within the Kafka timeout plus slack, whatever a
        // librdkafka call does; the tool's own timeouts normally fire first.
        let bound = rt.kafka.timeout().saturating_mul(3)
            + Duration::from_millis(rt.config.limits.max_consume_timeout_ms);
        match tokio::time::timeout(bound, tools::dispatch(tool, &ctx, args)).await {
            Ok(result) => result,
            Err(_) => Err(rt.kafka.classify(ToolError::new(
                ErrorCode::Timeout,
                format!("{tool} did not finish in {bound:?}"),
            ))),
        }
    }
}

/// mcp-confluent's tool names (`toolNames: [confluent]`).
impl KafkaMcp {
    /// Runs one call of a compat tool: translated into calls of its native
    /// tool, each through the call path of a native call (rate, RBAC with
    /// the native tool's name as the verb, environment rules, fence, plans,
    /// caps, one audit record naming both tools), stopping at the first
    /// error; the answer in the compat tool's shape. A call whose arguments
    /// do not translate leaves one record too, refused after the caller's
    /// rate and RBAC: a caller who may not call the tool learns nothing
    /// about its arguments.
    pub async fn call_compat(
        &self,
        subject: Option<&Arc<Subject>>,
        request: &CallInfo,
        tool: CompatTool,
        args: Value,
    ) -> Result<CompatAnswer, ToolError> {
        let native = tool.native().as_str();
        let limits = self.runtime().config.limits.clone();
        let translation = match tool.translate(args.clone(), &limits) {
            Ok(translation) => translation,
            Err(refusal) => {
                let via = Via::Untranslatable(tool, refusal.clone());
                let refused = self.call_via(subject, request, native, &via, args).await;
                return Err(refused.err().unwrap_or(refusal));
            }
        };
        let mut results = Vec::with_capacity(translation.calls().len());
        for call in translation.calls() {
            let result = self
                .call_via(subject, request, native, &Via::Compat(tool), call.clone())
                .await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        translation.shape(results)
    }
}

/// How a call reached the call path.
enum Via {
    /// `tools/call` of a native name.
    Native,
    /// A resource read: a fixed call of a native tool, whichever names the
    /// tools answer to.
    Resource,
    /// One native call of a compat tool.
    Compat(CompatTool),
    /// A compat call whose arguments do not translate: refused once the
    /// caller's rate and RBAC were checked for the native tool.
    Untranslatable(CompatTool, ToolError),
}

impl Via {
    /// Whether a call may name a native tool this way.
    fn may_use(&self, config: &SidecarConfig) -> bool {
        match self {
            Via::Native => config.answers_to(ToolNameSet::Native),
            Via::Resource | Via::Compat(_) | Via::Untranslatable(..) => true,
        }
    }

    fn called_as(&self) -> Option<CompatTool> {
        match self {
            Via::Native | Via::Resource => None,
            Via::Compat(tool) | Via::Untranslatable(tool, _) => Some(*tool),
        }
    }
}

/// The compat tool a `tools/call` name stands for, if the server answers to
/// compat names and enables its native tool (compat names never equal a
/// native name). Otherwise the name is not found, as the client gave it.
fn compat_tool(config: &SidecarConfig, name: &str) -> Option<CompatTool> {
    if !config.answers_to(ToolNameSet::Confluent) {
        return None;
    }
    name.parse::<CompatTool>()
        .ok()
        .filter(|tool| config.enables(tool.native()))
}

/// What `tools/list` shows of the tools a caller may call: under their
/// native names and under their compat names (with the native tool's
/// annotations), as the server's `toolNames` say.
fn listed_tools(config: &SidecarConfig, callable: &[ToolName]) -> Vec<Tool> {
    let mut listed = Vec::new();
    if config.answers_to(ToolNameSet::Native) {
        listed.extend(tools::describe_all(callable));
    }
    if config.answers_to(ToolNameSet::Confluent) {
        listed.extend(tools::describe_compat(callable));
    }
    listed
}

/// A compat tool's answer: mcp-confluent's text, and the structured fields.
fn compat_result(answer: CompatAnswer) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(answer.text)]);
    result.structured_content = Some(answer.structured);
    result
}

/// A call that may run.
struct Admitted {
    tool: ToolName,
    /// The plan an apply names.
    plan_id: Option<String>,
    /// The caller's topics and groups (`None`: every one).
    scope: Option<Arc<Scope>>,
}

/// What the audit record says of a call besides its result.
#[derive(Default)]
struct Outcome {
    /// Passed `admit` (the record's decision).
    admitted: bool,
    mutation: bool,
    /// Kafka was asked to change something (not a dry run, not refused before).
    changed_kafka: bool,
    plan_id: Option<String>,
}

async fn deliver_to_sink(sink: &KafkaSink, metrics: &Metrics, key: &str, line: &[u8]) {
    match sink.send(key, line).await {
        Ok(()) => {
            metrics.audit_sink_up.set(1);
        }
        Err(e) => {
            metrics.audit_sink_up.set(0);
            metrics.audit_sink_failures.inc();
            tracing::warn!(error = %e, "the Kafka audit sink did not take a record (stdout has it)");
        }
    }
}

/// Which request a call came in, for its audit record.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    pub request_id: String,
    pub session_id: Option<String>,
    /// How the call came: `kafka` for a job (absent: MCP).
    pub via: Option<&'static str>,
    /// The jobId of a job (none for a record without a usable one).
    pub job_id: Option<String>,
}

/// An audit record of one call, as far as the call path's common facts go
/// (who, where, what, the result); the caller fills in the decision.
fn audit_record(
    rt: &Runtime,
    subject: Option<&Arc<Subject>>,
    request: &CallInfo,
    name: &str,
    arguments: Value,
    result: &Result<Value, ToolError>,
    started: Instant,
) -> AuditRecord {
    let config = &rt.config;
    AuditRecord {
        kind: crate::audit::RECORD_KIND,
        time: jiff::Timestamp::now().to_string(),
        request_id: request.request_id.clone(),
        session_id: request.session_id.clone(),
        via: request.via,
        job_id: request.job_id.clone(),
        subject: subject.map(|s| Caller {
            username: s.username.clone(),
            uid: s.uid.clone(),
            groups: s.groups.clone(),
            issuer: s.signed_in.as_ref().map(|i| i.issuer.clone()),
            client: s.signed_in.as_ref().and_then(|i| i.client.clone()),
        }),
        server: config.server.name.clone(),
        namespace: config.server.namespace.clone(),
        environment: config.server.environment.clone(),
        cluster_id: rt.kafka.cluster_id(),
        tool: name.to_string(),
        called_as: None,
        arguments,
        decision: "deny",
        reason: None,
        dry_run: false,
        plan_id: None,
        diff: None,
        outcome: result
            .as_ref()
            .map_or_else(|e| e.code.as_str().to_string(), |_| "ok".to_string()),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

impl CallInfo {
    fn of(context: &RequestContext<RoleServer>) -> Self {
        let request_id = match &context.id {
            rmcp::model::NumberOrString::Number(n) => n.to_string(),
            rmcp::model::NumberOrString::String(s) => s.to_string(),
        };
        let session_id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Self {
            request_id,
            session_id,
            via: None,
            job_id: None,
        }
    }
}

/// The environment's rules for one call: break-glass windows (prod), and
/// two-phase mutations (staging, prod): a dry run, then an apply naming its plan.
fn check_environment(
    config: &SidecarConfig,
    tool: ToolName,
    dry_run: bool,
    names_plan: bool,
) -> Result<(), ToolError> {
    config
        .environment_allows(tool, jiff::Timestamp::now())
        .map_err(|m| ToolError::new(ErrorCode::PermissionDenied, m))?;
    if names_plan && (dry_run || !tool.is_mutation()) {
        return Err(ToolError::invalid(
            "plan_id is for applying a mutation's plan: call without dry_run",
        ));
    }
    let two_phase = matches!(
        config.mutation_rule(),
        MutationRule::TwoPhase | MutationRule::BreakGlass
    );
    if tool.is_mutation() && two_phase && !dry_run && !names_plan {
        return Err(ToolError::new(
            ErrorCode::PermissionDenied,
            format!(
                "mutations in {} are two-phase: call {tool} with dry_run: true to get a plan, then again with the same arguments and its plan_id",
                config.server.environment
            ),
        ));
    }
    Ok(())
}

/// The authenticated caller of an MCP request over HTTP (the `/mcp` guard
/// put it into the HTTP request, which rmcp hands over with the request).
fn caller(context: &RequestContext<RoleServer>) -> Option<Arc<Subject>> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<Arc<Subject>>()
        .cloned()
}

/// The JSON-RPC error code of a request refused by a limit outside a tool
/// call (`tools/list` over the caller's rate), in the range JSON-RPC leaves
/// to servers; the typed error is in `data.error`, as for resources.
pub const LIMIT_EXCEEDED_RPC_CODE: i32 = -32000;

/// The `_meta` key of a tool error's typed fields (`{code, message, retriable}`).
pub const ERROR_META_KEY: &str = "mcpkafka.dev/error";

/// A tool error as MCP wants it: `isError`, a text that starts with the
/// stable code, and for programs the typed error in `_meta`. Never
/// `structuredContent`: clients (the TypeScript SDK, the MCP Inspector)
/// check any structured content against the tool's output schema, which
/// describes the success, and would turn the error into a schema failure.
pub fn error_result(err: &ToolError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(err.to_string())]);
    let mut meta = MetaObject::new();
    meta.0.insert(
        ERROR_META_KEY.into(),
        serde_json::to_value(err).unwrap_or_default(),
    );
    result.meta = Some(meta);
    result
}

fn success_result(value: Value) -> CallToolResult {
    // Text content for clients that ignore structured content.
    let text = serde_json::to_string(&value).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

const RESOURCES: [(&str, &str, ToolName, &str); 4] = [
    (
        "kafka://brokers",
        "brokers",
        ToolName::ListBrokers,
        "The cluster's brokers.",
    ),
    (
        "kafka://topics",
        "topics",
        ToolName::ListTopics,
        "Topics with partition counts (first page).",
    ),
    (
        "kafka://consumer-groups",
        "consumer-groups",
        ToolName::ListGroups,
        "Consumer groups with their states.",
    ),
    (
        "kafka://metrics",
        "metrics",
        ToolName::ClusterMetrics,
        "Broker metrics over the last 5 minutes, from Prometheus (cluster_metrics).",
    ),
];
const TOPIC_TEMPLATE: &str = "kafka://topics/{name}";

impl ServerHandler for KafkaMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-kafka-sidecar",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Tools for one Apache Kafka cluster. Answers are capped; list tools paginate. \
                 Mutations accept dry_run: true to see what would change.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // Each caller sees only the tools it may call. With Kubernetes
        // auth that is a SubjectAccessReview per tool not in the decision
        // cache, so a listing is then a call from the caller's bucket, like
        // a tool call, before any is asked; without auth it asks nobody.
        let subject = caller(&context);
        if matches!(self.callers, Callers::Kubernetes(_)) {
            self.runtime().admit_caller(subject.as_ref()).map_err(|e| {
                ErrorData::new(
                    rmcp::model::ErrorCode(LIMIT_EXCEEDED_RPC_CODE),
                    e.to_string(),
                    Some(json!({ "error": e })),
                )
            })?;
        }
        let tools = self.tools_for(subject.as_ref()).await;
        let listed = listed_tools(&self.runtime().config, &tools);
        Ok(ListToolsResult::with_all_items(listed))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let (subject, info) = (caller(&context), CallInfo::of(&context));
        let result = match compat_tool(&self.runtime().config, &request.name) {
            Some(tool) => self
                .call_compat(subject.as_ref(), &info, tool, args)
                .await
                .map(compat_result),
            None => self
                .call_as(subject.as_ref(), &info, &request.name, args)
                .await
                .map(success_result),
        };
        match result {
            Ok(result) => Ok(result.into()),
            Err(err) => {
                tracing::info!(tool = %request.name, code = err.code.as_str(), "tool call failed");
                Ok(error_result(&err).into())
            }
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let config = &self.runtime().config;
        let resources = RESOURCES
            .iter()
            .filter(|(_, _, tool, _)| config.enables(*tool))
            .map(|(uri, name, _, desc)| {
                Resource::new(*uri, *name)
                    .with_description(*desc)
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = if self.runtime().config.enables(ToolName::DescribeTopic) {
            vec![
                ResourceTemplate::new(TOPIC_TEMPLATE, "topic")
                    .with_description("One topic: partitions, offsets and non-default configs.")
                    .with_mime_type("application/json"),
            ]
        } else {
            Vec::new()
        };
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        // A resource is a fixed call of the tool behind it, under the same checks.
        let (tool, args) = if let Some((_, _, tool, _)) = RESOURCES.iter().find(|(u, ..)| *u == uri)
        {
            (*tool, json!({}))
        } else if let Some(name) = uri.strip_prefix("kafka://topics/") {
            (ToolName::DescribeTopic, json!({ "topic": name }))
        } else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {uri}"),
                None,
            ));
        };
        let result = self
            .call_via(
                caller(&context).as_ref(),
                &CallInfo::of(&context),
                tool.as_str(),
                &Via::Resource,
                args,
            )
            .await;
        match result {
            Ok(value) => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                let contents = ResourceContents::text(text, uri).with_mime_type("application/json");
                Ok(ReadResourceResult::new(vec![contents]).into())
            }
            Err(e) if e.code == ErrorCode::NotFound => {
                Err(ErrorData::resource_not_found(e.to_string(), None))
            }
            Err(e) => Err(ErrorData::internal_error(
                e.to_string(),
                Some(json!({ "error": e })),
            )),
        }
    }
}
