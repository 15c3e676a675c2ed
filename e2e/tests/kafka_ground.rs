//! The Kafka half of the test ground is a real broker: topics, partitions,
//! configs, produce, group consumption, committed offsets and lag all behave
//! as Kafka does (which is why no emulator stands in for it).

use std::collections::HashMap;
use std::time::Duration;

use mcpk_e2e::{Ground, eventually, unique_name};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin() -> AdminClient<DefaultClientContext> {
    Ground::get().kafka_config().create().expect("admin client")
}

fn partition_count(topic: &str) -> usize {
    Ground::get().partition_count(topic)
}

async fn produce(topic: &str, count: usize, tag: &str) {
    let producer: FutureProducer = Ground::get()
        .kafka_config()
        .set("acks", "all")
        .create()
        .expect("producer");
    let sends = (0..count).map(|i| {
        let producer = producer.clone();
        let key = format!("key-{i}");
        let value = format!("{tag}-{i}");
        async move {
            producer
                .send(FutureRecord::to(topic).key(&key).payload(&value), TIMEOUT)
                .await
                .map_err(|(e, _)| e)
                .expect("produce")
        }
    });
    futures::future::join_all(sends).await;
}

/// Committed offset minus high watermark, summed over the topic's partitions.
fn group_lag(group: &str, topic: &str, partitions: i32) -> (i64, i64) {
    let consumer: BaseConsumer = Ground::get()
        .kafka_config()
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    let (mut committed_sum, mut lag) = (0, 0);
    for elem in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, elem.partition(), TIMEOUT)
            .expect("watermarks");
        let at = match elem.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        committed_sum += at;
        lag += high - at;
    }
    (committed_sum, lag)
}

#[tokio::test]
async fn topics_partitions_and_configs_change_on_the_real_broker() {
    let admin = admin();
    let topic = unique_name("ground-admin");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "create_topics: {created:?}");
    eventually("3 partitions in metadata", || async {
        (partition_count(&topic) == 3).then_some(())
    })
    .await;

    // Creating it again is refused by the broker, as Kafka does.
    let again = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert!(again[0].is_err(), "a duplicate topic was created");

    let grown = admin
        .create_partitions(&[NewPartitions::new(&topic, 5)], &opts)
        .await
        .unwrap();
    assert!(grown[0].is_ok(), "create_partitions: {grown:?}");
    eventually("5 partitions in metadata", || async {
        (partition_count(&topic) == 5).then_some(())
    })
    .await;

    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "4242000");
    let altered = admin.alter_configs(&[alter], &opts).await.unwrap();
    assert!(altered[0].is_ok(), "alter_configs: {altered:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&topic)], &opts)
        .await
        .unwrap();
    let config = described[0].as_ref().expect("describe_configs");
    let retention = config.get("retention.ms").and_then(|e| e.value.clone());
    assert_eq!(retention.as_deref(), Some("4242000"));
    assert!(!config.get("retention.ms").unwrap().is_default);

    let deleted = admin.delete_topics(&[&topic], &opts).await.unwrap();
    assert!(deleted[0].is_ok());
}

#[tokio::test]
async fn a_group_consumes_1000_messages_and_its_offsets_and_lag_are_real() {
    let admin = admin();
    let topic = unique_name("ground-group");
    let group = unique_name("ground-consumers");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    eventually("topic metadata", || async {
        (partition_count(&topic) == 3).then_some(())
    })
    .await;

    produce(&topic, 1000, "first").await;

    let consumer = Ground::get().group_consumer(&group, &topic);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "consumed only {} of 1000 messages",
            seen.len()
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(500)) {
            let msg = msg.expect("consume");
            let value = String::from_utf8(msg.payload().expect("payload").to_vec()).unwrap();
            *seen.entry(value).or_default() += 1;
        }
    }
    assert!(seen.keys().all(|v| v.starts_with("first-")));
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(consumer);

    let (committed, lag) = group_lag(&group, &topic, 3);
    assert_eq!((committed, lag), (1000, 0), "after consuming everything");

    produce(&topic, 250, "second").await;
    let (committed, lag) = group_lag(&group, &topic, 3);
    assert_eq!((committed, lag), (1000, 250), "lag = produced - committed");

    let deleted = admin.delete_topics(&[&topic], &opts).await.unwrap();
    assert!(deleted[0].is_ok());
}

#[tokio::test]
async fn the_broker_reports_the_cluster_id_the_stack_formatted() {
    let consumer: BaseConsumer = Ground::get().kafka_config().create().expect("consumer");
    let id = consumer.client().fetch_cluster_id(TIMEOUT);
    assert_eq!(id.as_deref(), Some(Ground::get().kafka_cluster_id.as_str()));
}
