//! Two operator processes, one Lease: one leads, the other stands by and
//! takes over when the leader is stopped (SIGTERM releases the Lease). And
//! a leader that can no longer renew its Lease stops.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use mcpk_e2e::{Ground, eventually};
use support::{OperatorProcess, kubeconfig_with_token, operator_identity};

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

/// The leader's Lease rule revoked (as a Lease namespace deleted or an
/// apiserver gone would do to it too): its next renewal fails, and it must
/// stop before the Lease runs out for a standby, not go on reconciling
/// without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_cannot_renew_its_lease_stops() {
    let ground = Ground::get();
    ground.install_crds();
    let admin = ground.kube_admin().await;
    let ns = ground.namespace("lease-revoked", None);
    let token = operator_identity(&admin, &ns).await;
    let kubeconfig = kubeconfig_with_token(ground, &token);
    let mut leader = OperatorProcess::start(
        &ns,
        &kubeconfig,
        &["--metrics-address", "127.0.0.1:0", "--lease-namespace", &ns],
    );
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
    eventually("the operator to lead", || async {
        holder(&leases).await?;
        leader.log_text().contains("became leader").then_some(())
    })
    .await;

    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .delete("mcp-kafka-operator-lease", &Default::default())
        .await
        .expect("revoking the operator's Lease rule");
    let revoked = Instant::now();
    let status = loop {
        if let Some(status) = leader.child.try_wait().expect("polling the operator") {
            break status;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(60),
            "the leader still runs 60 s after losing its Lease rule:\n{}",
            leader.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = revoked.elapsed();
    let log = leader.log_text();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("lost leadership: the Lease could not be renewed"),
        "{log}"
    );
    assert!(log.contains("controller stopped"), "{log}");
    // It renews every 10 s and the Lease lasts 15 s: a leader that stops at
    // its first failed renewal is gone before anyone else may lead. (20 s,
    // not 15, leaves room for a slow machine; the old code never stopped.)
    assert!(
        took < Duration::from_secs(20),
        "stopped {took:?} after the revocation"
    );
}
