//! Two operator processes, one Lease: one leads, the other stands by and
//! takes over when the leader is stopped (SIGTERM releases the Lease).

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use mcpk_e2e::{Ground, eventually};
use support::OperatorProcess;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt("mcp-kafka-operator").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let ground = Ground::get();
    ground.install_crds();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("leader-election", None);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let args = |id: &'static str| {
        [
            "--metrics-address",
            "127.0.0.1:0",
            "--lease-namespace",
            ns.as_str(),
            "--identity",
            id,
        ]
    };

    let mut first =
        OperatorProcess::start(&format!("{ns}-first"), &ground.kubeconfig, &args("first"));
    eventually("the first replica to lead", || async {
        (holder(&leases).await? == "first").then_some(())
    })
    .await;
    let second =
        OperatorProcess::start(&format!("{ns}-second"), &ground.kubeconfig, &args("second"));
    eventually("the second replica to wait for the Lease", || async {
        second
            .log_text()
            .contains("waiting for leadership")
            .then_some(())
    })
    .await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("first"),
        "one leader at a time"
    );
    assert!(!second.log_text().contains("became leader"));

    let status = first.terminate();
    assert!(
        status.success(),
        "a SIGTERM ends the operator cleanly: {status}\n{}",
        first.log_text()
    );
    eventually("the second replica to take over", || async {
        (holder(&leases).await? == "second").then_some(())
    })
    .await;
    eventually("the second replica to say so", || async {
        second.log_text().contains("became leader").then_some(())
    })
    .await;
}
