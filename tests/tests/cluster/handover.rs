//! A node that joins a cluster with routed events still in its own store: they are handed over to
//! the cluster's routing log and delivered from there, not lost with the local file.

use std::collections::BTreeSet;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::cluster::{NatsCluster, cluster_config, node_id};
use gateway_tests::webhook;

const EVENTS: usize = 5;

fn routing(url: &str) -> String {
    format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook]
retryDelaysSeconds = [30]

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}/hook"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_buffered_before_joining_a_cluster_are_delivered_from_it() {
    // Alone, with a webhook whose port refuses: the events wait in the local store.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut alone = Gridmq::start_with_config(&routing(&closed_url));
    let mut client = v5::Client::connect(alone.addr, "handover").await;
    let mut expected = BTreeSet::new();
    for n in 0..EVENTS {
        let payload = format!("before-{n}");
        let mut text = v5::no_properties();
        text.payload_format_indicator = Some(1);
        client
            .publish_with("dev/handover", v5::QoS::AtLeastOnce, false, payload.as_bytes(), text)
            .await;
        // Acknowledged means stored: only then may the node stop.
        client.puback().await;
        expected.insert(payload);
    }
    drop(client);
    let data = alone.data_dir();
    alone.terminate(Duration::from_secs(10));

    // The same data directory joins a cluster, now with a webhook that accepts.
    let server = webhook::accepting().await;
    let nats = NatsCluster::start(3);
    let _joined =
        Gridmq::start_in(data, &cluster_config(&nats, &node_id(0), &routing(&server.uri())));
    let posts = webhook::wait_posts(&server, "/hook", Duration::from_secs(30), |posts| {
        let got: BTreeSet<String> = webhook::events(posts)
            .iter()
            .filter_map(|e| e["data"].as_str().map(str::to_string))
            .collect();
        expected.is_subset(&got)
    })
    .await;
    assert!(webhook::events(&posts).len() >= EVENTS);
    // Handed over, the local rows are gone: the cluster's log holds nothing more for them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(nats.stream_messages(0, "GM_EVENTS"), Some(0), "every event was settled");
}
