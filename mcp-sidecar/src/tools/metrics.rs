//! `cluster_metrics`: throughput, request latency, errors and replication
//! health of the brokers, from the Prometheus that scrapes their JMX
//! exporters. Every figure says its unit and the PromQL it came from; a
//! figure Prometheus has no data for is `null` with the reason, never 0.
//!
//! The metric names are those of Strimzi's JMX exporter rules (the ones
//! most Prometheus installs of Kafka have; the test ground's broker uses
//! them too: e2e/kafka/jmx-exporter.yaml).

use std::collections::BTreeMap;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ToolContext;
use crate::config::topic_name_problem;
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::prometheus::Vector;

/// Shortest window: a rate needs two scrapes in it, and scrape intervals
/// are commonly 15 s.
pub const MIN_WINDOW_SECONDS: u64 = 30;
/// Longest window: beyond a day the figures say little about "now" and the
/// queries get expensive.
pub const MAX_WINDOW_SECONDS: u64 = 24 * 3600;
pub const DEFAULT_TOP: usize = 10;
pub const MAX_TOP: usize = 50;
/// Most per-broker rows (and series read per per-broker query).
pub const MAX_BROKERS: usize = 100;
/// Most per-topic series read from one query before the ranking.
pub const MAX_TOPIC_SERIES: usize = 10_000;
/// Queries of one call in flight at once.
const PARALLEL_QUERIES: usize = 8;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterMetricsArgs {
    /// The window rates and latencies are computed over: a number and a
    /// unit (s, m, h), from 30s to 24h. Default 5m.
    #[serde(default)]
    pub window: Option<String>,
    /// One topic's figures instead of the busiest topics.
    #[serde(default)]
    pub topic: Option<String>,
    /// How many topics to show, busiest (bytes in) first. Default 10, at most 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    pub top: Option<usize>,
}

/// One figure: its value, unit and query, or why there is none.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Figure {
    /// `null` when Prometheus has no data for it (see `missing`).
    pub value: Option<f64>,
    pub unit: String,
    /// The PromQL this value is the answer of (evaluated at `at`).
    pub query: String,
    /// Why there is no value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// A per-broker value: its unit and query are the figure's in `broker_queries`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Reading {
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// Where a per-broker figure comes from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Source {
    pub unit: String,
    /// Grouped by the broker label; each broker's value is its series.
    pub query: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BrokerMetrics {
    /// The broker label's value (by default `instance`: the exporter's address).
    pub broker: String,
    pub figures: Figures<Reading>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopicMetrics {
    pub topic: String,
    pub bytes_in_per_sec: Figure,
    pub bytes_out_per_sec: Figure,
    pub messages_in_per_sec: Figure,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ClusterMetrics {
    /// Which source answered (`prometheus`).
    pub source: String,
    /// The window, as PromQL writes it.
    pub window: String,
    pub window_seconds: u64,
    /// The evaluation time of every query (RFC 3339).
    pub at: String,
    /// The whole cluster.
    pub cluster: Figures<Figure>,
    /// The same per broker.
    pub brokers: Vec<BrokerMetrics>,
    pub broker_queries: Figures<Source>,
    /// The named topic, or the busiest topics by bytes in.
    pub topics: Vec<TopicMetrics>,
    /// Topics outside this caller's scope were left out of `topics`.
    pub scoped: bool,
    /// A list was cut at its cap (brokers, topic series, or `top`).
    pub truncated: bool,
    /// Time spent waiting for Prometheus (all queries, in parallel).
    pub query_ms: u64,
    /// Remarks on reading the figures.
    pub notes: Vec<String>,
}

/// How a figure is combined over series: a cluster's total, its worst
/// broker, or the brokers' mean.
#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Max,
    Avg,
}

impl Agg {
    fn as_str(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Max => "max",
            Agg::Avg => "avg",
        }
    }
}

/// One figure's definition: a unit, how it aggregates, and its series
/// expression with `{m}` for the extra label matchers and `{w}` for the window.
struct Spec {
    unit: &'static str,
    agg: Agg,
    expr: &'static str,
}

macro_rules! figures {
    ($($field:ident => $unit:literal, $agg:ident, $expr:literal;)*) => {
        /// The broker-level figures, cluster-wide or for one broker.
        #[derive(Debug, Clone, Serialize, JsonSchema)]
        pub struct Figures<T> {
            $(pub $field: T,)*
        }

        const SPECS: &[Spec] = &[$(Spec { unit: $unit, agg: Agg::$agg, expr: $expr },)*];

        impl<T> Figures<T> {
            /// From one value per spec, in `SPECS` order.
            fn from_values(values: Vec<T>) -> Option<Self> {
                let mut values = values.into_iter();
                Some(Self { $($field: values.next()?,)* })
            }
        }
    };
}

figures! {
    bytes_in_per_sec => "bytes/s", Sum,
        "rate(kafka_server_brokertopicmetrics_bytesin_total{topic=\"\"{m}}[{w}])";
    bytes_out_per_sec => "bytes/s", Sum,
        "rate(kafka_server_brokertopicmetrics_bytesout_total{topic=\"\"{m}}[{w}])";
    messages_in_per_sec => "messages/s", Sum,
        "rate(kafka_server_brokertopicmetrics_messagesin_total{topic=\"\"{m}}[{w}])";
    produce_requests_per_sec => "requests/s", Sum,
        "rate(kafka_network_requestmetrics_requests_total{request=\"Produce\"{m}}[{w}])";
    fetch_consumer_requests_per_sec => "requests/s", Sum,
        "rate(kafka_network_requestmetrics_requests_total{request=\"FetchConsumer\"{m}}[{w}])";
    produce_p99_ms => "ms (the highest p99 of total request time a broker reported in the window)", Max,
        "max_over_time(kafka_network_requestmetrics_totaltimems{request=\"Produce\",quantile=\"0.99\"{m}}[{w}])";
    fetch_consumer_p99_ms => "ms (the highest p99 of total request time a broker reported in the window)", Max,
        "max_over_time(kafka_network_requestmetrics_totaltimems{request=\"FetchConsumer\",quantile=\"0.99\"{m}}[{w}])";
    failed_produce_requests_per_sec => "requests/s", Sum,
        "rate(kafka_server_brokertopicmetrics_failedproducerequests_total{topic=\"\"{m}}[{w}])";
    failed_fetch_requests_per_sec => "requests/s", Sum,
        "rate(kafka_server_brokertopicmetrics_failedfetchrequests_total{topic=\"\"{m}}[{w}])";
    under_replicated_partitions => "partitions (now)", Sum,
        "last_over_time(kafka_server_replicamanager_underreplicatedpartitions{{m}}[{w}])";
    offline_partitions => "partitions (now, as the active controller counts them)", Max,
        "last_over_time(kafka_controller_kafkacontroller_offlinepartitionscount{{m}}[{w}])";
    active_controllers => "controllers (now; 1 in a healthy cluster)", Sum,
        "last_over_time(kafka_controller_kafkacontroller_activecontrollercount{{m}}[{w}])";
    isr_shrinks_per_sec => "shrinks/s", Sum,
        "rate(kafka_server_replicamanager_isrshrinks_total{{m}}[{w}])";
    isr_expands_per_sec => "expands/s", Sum,
        "rate(kafka_server_replicamanager_isrexpands_total{{m}}[{w}])";
    request_handler_idle_ratio => "ratio (1 = idle; a process that is broker and controller adds both pools' ratios)", Avg,
        "avg_over_time(kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent{{m}}[{w}])";
    network_processor_idle_ratio => "ratio (1 = idle)", Avg,
        "avg_over_time(kafka_network_socketserver_networkprocessoravgidle_percent{{m}}[{w}])";
}

/// A topic's figures: unit and counter.
const TOPIC_SPECS: [(&str, &str); 3] = [
    ("bytes/s", "kafka_server_brokertopicmetrics_bytesin_total"),
    ("bytes/s", "kafka_server_brokertopicmetrics_bytesout_total"),
    (
        "messages/s",
        "kafka_server_brokertopicmetrics_messagesin_total",
    ),
];

/// Reads a window such as `90s`, `5m` or `1h` as seconds, within bounds.
pub fn parse_window(text: &str) -> ToolResult<u64> {
    let bad = || {
        ToolError::invalid(format!(
            "window {text:?} is not a number and a unit (s, m, h), e.g. \"5m\""
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        // Days and longer parse, to be refused by size below.
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let seconds = number.checked_mul(scale).ok_or_else(bad)?;
    if !(MIN_WINDOW_SECONDS..=MAX_WINDOW_SECONDS).contains(&seconds) {
        return Err(ToolError::invalid(format!(
            "window {text:?} is outside 30s..24h"
        )));
    }
    Ok(seconds)
}

/// The matchers of a selector: the fixed ones, then the configured ones.
fn matchers(fixed: &str, extra: Option<&str>) -> String {
    match (fixed.is_empty(), extra) {
        (_, None) => fixed.to_string(),
        (true, Some(extra)) => extra.to_string(),
        (false, Some(extra)) => format!("{fixed},{extra}"),
    }
}

/// A spec's series expression for this source and window.
fn series(expr: &str, extra: Option<&str>, window: &str) -> String {
    // `{m}` follows the fixed matchers inside the braces (or is alone in
    // `{{m}}`); the configured matchers go there.
    let (extra_with_comma, extra_alone) = match extra {
        Some(e) => (format!(",{e}"), e.to_string()),
        None => (String::new(), String::new()),
    };
    expr.replace("{{m}}", &format!("{{{extra_alone}}}"))
        .replace("{m}", &extra_with_comma)
        .replace("{w}", window)
}

fn missing_reason(what: &str) -> String {
    format!(
        "no series: Prometheus has no data for {what} in the window (is the brokers' JMX exporter scraped, with Strimzi's metric names?)"
    )
}

/// One value of a figure: the single series' value, or why there is none.
fn reading(vector: Option<&Vector>, what: &str) -> (Option<f64>, Option<String>) {
    match vector.and_then(|v| v.samples.first()) {
        None => (None, Some(missing_reason(what))),
        Some(s) if s.value.is_finite() => (Some(s.value), None),
        Some(_) => (
            None,
            Some("not a number: Prometheus has no samples to compute it from in the window".into()),
        ),
    }
}

fn sample_reading(value: f64) -> Reading {
    if value.is_finite() {
        Reading {
            value: Some(value),
            missing: None,
        }
    } else {
        Reading {
            value: None,
            missing: Some("not a number in the window".into()),
        }
    }
}

pub async fn cluster_metrics(
    ctx: &ToolContext,
    args: ClusterMetricsArgs,
) -> ToolResult<ClusterMetrics> {
    let Some(prom) = ctx.prometheus.clone() else {
        return Err(ToolError::new(
            ErrorCode::MetricsUnavailable,
            "this server has no metrics source configured",
        ));
    };
    let window_seconds = parse_window(args.window.as_deref().unwrap_or("5m"))?;
    if let Some(topic) = &args.topic
        && let Some(problem) = topic_name_problem(topic)
    {
        return Err(ToolError::invalid(problem));
    }
    let top = args.top.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&top) {
        return Err(ToolError::invalid(format!(
            "top must be between 1 and {MAX_TOP}"
        )));
    }
    let window = format!("{window_seconds}s");
    let source = prom.source();
    let extra = source.selector.as_deref();
    let label = source.broker_label.clone();
    let now = jiff::Timestamp::now();
    let time = now.as_millisecond() as f64 / 1000.0;

    // Every query of the call: per spec the cluster's and the brokers',
    // then the topics'.
    let mut queries: Vec<(String, usize)> = Vec::new();
    for spec in SPECS {
        let s = series(spec.expr, extra, &window);
        let agg = spec.agg.as_str();
        queries.push((format!("{agg}({s})"), 1));
        queries.push((format!("{agg} by ({label}) ({s})"), MAX_BROKERS));
    }
    let topic_matcher = match &args.topic {
        Some(topic) => format!("topic=\"{topic}\""),
        None => "topic!=\"\"".to_string(),
    };
    for (_, counter) in TOPIC_SPECS {
        let m = matchers(&topic_matcher, extra);
        queries.push((
            format!("sum by (topic) (rate({counter}{{{m}}}[{window}]))"),
            MAX_TOPIC_SERIES,
        ));
    }

    let started = Instant::now();
    let run = stream::iter(queries.iter().cloned())
        .map(|(q, limit)| {
            let prom = prom.clone();
            async move { prom.query(&q, time, limit).await }
        })
        .buffered(PARALLEL_QUERIES)
        .collect::<Vec<_>>();
    let answers = tokio::time::timeout(prom.timeout(), run)
        .await
        .map_err(|_| {
            ToolError::new(
                ErrorCode::MetricsUnavailable,
                format!(
                    "Prometheus at {} did not answer {} queries within {} ms (metrics.prometheus.timeoutMs)",
                    source.url,
                    queries.len(),
                    source.timeout_ms
                ),
            )
        })?
        .into_iter()
        .collect::<ToolResult<Vec<Vector>>>()?;
    let query_ms = started.elapsed().as_millis() as u64;

    let mut truncated = false;
    let mut cluster = Vec::new();
    let mut sources = Vec::new();
    let mut per_broker: BTreeMap<String, Vec<Reading>> = BTreeMap::new();
    for (i, spec) in SPECS.iter().enumerate() {
        let (whole, grouped) = (&answers[2 * i], &answers[2 * i + 1]);
        let (value, missing) = reading(Some(whole), "it");
        cluster.push(Figure {
            value,
            unit: spec.unit.into(),
            query: queries[2 * i].0.clone(),
            missing,
        });
        sources.push(Source {
            unit: spec.unit.into(),
            query: queries[2 * i + 1].0.clone(),
        });
        truncated |= grouped.truncated;
        for sample in &grouped.samples {
            let broker = sample.labels.get(&label).cloned().unwrap_or_default();
            per_broker.entry(broker).or_default();
        }
    }
    // A broker missing from one figure's answer has no data for it.
    for (i, _) in SPECS.iter().enumerate() {
        let grouped = &answers[2 * i + 1];
        for (broker, readings) in per_broker.iter_mut() {
            let found = grouped
                .samples
                .iter()
                .find(|s| s.labels.get(&label).map(String::as_str).unwrap_or("") == broker);
            readings.push(match found {
                Some(s) => sample_reading(s.value),
                None => Reading {
                    value: None,
                    missing: Some(missing_reason("this broker")),
                },
            });
        }
    }
    let brokers = per_broker
        .into_iter()
        .filter_map(|(broker, readings)| {
            Some(BrokerMetrics {
                broker,
                figures: Figures::from_values(readings)?,
            })
        })
        .collect();

    let topic_answers = &answers[2 * SPECS.len()..];
    let in_scope = ctx.topics_in_scope();
    let by_topic = |v: &Vector| -> BTreeMap<String, f64> {
        v.samples
            .iter()
            .filter_map(|s| Some((s.labels.get("topic")?.clone(), s.value)))
            .collect()
    };
    let figures: Vec<BTreeMap<String, f64>> = topic_answers.iter().map(by_topic).collect();
    truncated |= topic_answers.iter().any(|v| v.truncated);
    let names: Vec<String> = match &args.topic {
        Some(topic) => vec![topic.clone()],
        None => {
            let mut ranked: Vec<(&String, f64)> = figures[0]
                .iter()
                .filter(|(name, _)| in_scope(name))
                .map(|(name, v)| (name, if v.is_finite() { *v } else { f64::MIN }))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            truncated |= ranked.len() > top;
            ranked
                .into_iter()
                .take(top)
                .map(|(n, _)| n.clone())
                .collect()
        }
    };
    let topics = names
        .into_iter()
        .map(|topic| {
            let figure = |i: usize| {
                let (unit, _) = TOPIC_SPECS[i];
                let query = queries[2 * SPECS.len() + i].0.clone();
                let (value, missing) = match figures[i].get(&topic) {
                    Some(v) if v.is_finite() => (Some(*v), None),
                    Some(_) => (None, Some("not a number in the window".to_string())),
                    None => (
                        None,
                        Some(format!(
                            "no series for topic {topic:?}: a broker exports a topic's meters only once the topic has had traffic since the broker started"
                        )),
                    ),
                };
                Figure {
                    value,
                    unit: unit.into(),
                    query,
                    missing,
                }
            };
            TopicMetrics {
                bytes_in_per_sec: figure(0),
                bytes_out_per_sec: figure(1),
                messages_in_per_sec: figure(2),
                topic,
            }
        })
        .collect();

    let internal = || ToolError::new(ErrorCode::Internal, "a figure is missing its answer");
    Ok(ClusterMetrics {
        source: "prometheus".into(),
        window,
        window_seconds,
        at: now.to_string(),
        cluster: Figures::from_values(cluster).ok_or_else(internal)?,
        brokers,
        broker_queries: Figures::from_values(sources).ok_or_else(internal)?,
        topics,
        scoped: ctx.scoped(),
        truncated,
        query_ms,
        notes: vec![
            "Rates are per second over the window (PromQL rate of the brokers' counters); a value of 0 is Prometheus' answer, a null one has no data.".into(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_window("30s").unwrap(), 30);
        assert_eq!(parse_window("5m").unwrap(), 300);
        assert_eq!(parse_window("24h").unwrap(), 86_400);
        for bad in [
            "29s",
            "25h",
            "10y",
            "3650d",
            "",
            "m",
            "5",
            "5 m",
            "-5m",
            "1.5h",
            "99999999999999999999s",
        ] {
            let e = parse_window(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        }
        assert!(
            parse_window("10y")
                .unwrap_err()
                .message
                .contains("30s..24h")
        );
    }

    #[test]
    fn the_configured_matchers_go_into_every_selector() {
        let spec = &SPECS[0];
        assert_eq!(
            series(spec.expr, None, "300s"),
            "rate(kafka_server_brokertopicmetrics_bytesin_total{topic=\"\"}[300s])"
        );
        assert_eq!(
            series(spec.expr, Some("job=\"kafka\""), "60s"),
            "rate(kafka_server_brokertopicmetrics_bytesin_total{topic=\"\",job=\"kafka\"}[60s])"
        );
        let alone = SPECS
            .iter()
            .find(|s| s.expr.contains("underreplicated"))
            .unwrap();
        assert_eq!(
            series(alone.expr, Some("job=\"kafka\""), "60s"),
            "last_over_time(kafka_server_replicamanager_underreplicatedpartitions{job=\"kafka\"}[60s])"
        );
        assert_eq!(
            series(alone.expr, None, "60s"),
            "last_over_time(kafka_server_replicamanager_underreplicatedpartitions{}[60s])"
        );
        assert_eq!(
            matchers("topic!=\"\"", Some("job=\"k\"")),
            "topic!=\"\",job=\"k\""
        );
    }

    #[test]
    fn every_spec_has_a_field() {
        let values: Vec<usize> = (0..SPECS.len()).collect();
        let figures = Figures::from_values(values).unwrap();
        assert_eq!(figures.network_processor_idle_ratio, SPECS.len() - 1);
        assert!(Figures::<usize>::from_values(vec![0; SPECS.len() - 1]).is_none());
    }

    #[test]
    fn no_data_is_missing_never_zero() {
        let (value, missing) = reading(Some(&Vector::default()), "it");
        assert_eq!(value, None);
        assert!(missing.unwrap().starts_with("no series"));
        let nan = Vector {
            samples: vec![crate::prometheus::Sample {
                labels: Default::default(),
                value: f64::NAN,
            }],
            truncated: false,
        };
        let (value, missing) = reading(Some(&nan), "it");
        assert_eq!(value, None);
        assert!(missing.unwrap().starts_with("not a number"));
    }
}
