use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::config::Config;

const TOKEN: &str = "test-admin-token-0123456789";

fn namespace() -> Arc<Namespace> {
    let config = Config::parse(&format!(
        r#"
        [management]
        admin_token = "{TOKEN}"
        [topicSpaces.declared]
        topicTemplates = ["declared/#"]
        "#
    ))
    .expect("config");
    Namespace::open(config.namespace_section(), &[])
        .expect("namespace")
        .expect("access control applies")
}

/// Sends one request to a fresh router over `namespace`; returns status and JSON body.
async fn call(
    namespace: &Arc<Namespace>,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app(namespace.clone(), TOKEN, None)
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("call");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") };
    (status, value)
}

async fn put(namespace: &Arc<Namespace>, uri: &str, body: Value) -> (StatusCode, Value) {
    call(namespace, Method::PUT, uri, Some(TOKEN), Some(body)).await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn config_reload_needs_the_token_and_a_config_file() {
    let ns = namespace();
    let (status, _) = call(&ns, Method::POST, "/config:reload", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Started without a config file (as here, in process): nothing to read again.
    let (status, body) = call(&ns, Method::POST, "/config:reload", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "NoConfigFile");
}

#[tokio::test]
async fn health_needs_no_token_and_everything_else_does() {
    let ns = namespace();
    let (status, body) = call(&ns, Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = call(&ns, Method::GET, "/clients", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthorized");
    let (status, _) =
        call(&ns, Method::GET, "/clients", Some("wrong-token-0123456789"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = put_unauthorized(
        &ns,
        "/clientGroups/fleet",
        json!({"properties": {"query": "attributes.a = 1"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(ns.resources().client_groups.is_empty());
}

async fn put_unauthorized(ns: &Arc<Namespace>, uri: &str, body: Value) -> (StatusCode, Value) {
    call(ns, Method::PUT, uri, None, Some(body)).await
}

#[tokio::test]
async fn create_read_replace_list_delete() {
    let ns = namespace();
    let group = json!({"properties": {"query": "attributes.site = 'berlin'"}});
    let (status, body) = put(&ns, "/clientGroups/berlin", group.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "berlin");
    assert_eq!(body["type"], "Microsoft.EventGrid/namespaces/clientGroups");
    assert_eq!(body["properties"]["provisioningState"], "Succeeded");

    // A GET response goes back as a PUT unchanged: id, name, type, provisioningState ignored.
    let (status, got) = call(&ns, Method::GET, "/clientGroups/berlin", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["properties"]["query"], "attributes.site = 'berlin'");
    let mut again = got.clone();
    again["systemData"] = json!({"createdBy": "someone"});
    let (status, _) = put(&ns, "/clientGroups/berlin", again).await;
    assert_eq!(status, StatusCode::OK);

    let (status, list) = call(&ns, Method::GET, "/clientGroups", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));

    let (status, _) = call(&ns, Method::DELETE, "/clientGroups/berlin", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&ns, Method::GET, "/clientGroups/berlin", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NotFound");
    let (status, _) = call(&ns, Method::DELETE, "/clientGroups/berlin", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_kind_round_trips() {
    let ns = namespace();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
    let cases = [
        (
            "/clients/car1",
            json!({"properties": {"attributes": {"site": "berlin", "floor": 3}, "passwordHash": hash}}),
        ),
        ("/clientGroups/fleet", json!({"properties": {"query": "attributes.floor <= 5"}})),
        (
            "/topicSpaces/vehicles",
            json!({"properties": {"topicTemplates": ["v/${client.authenticationName}/#"]}}),
        ),
        (
            "/permissionBindings/fleet-pub",
            json!({"properties": {"clientGroupName": "fleet", "topicSpaceName": "vehicles", "permission": "Publisher"}}),
        ),
        (
            "/caCertificates/fleet-ca",
            json!({"properties": {"encodedCertificate": "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----"}}),
        ),
    ];
    for (uri, body) in cases {
        let (status, created) = put(&ns, uri, body).await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {created}");
        let (status, got) = call(&ns, Method::GET, uri, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(got, created, "{uri}");
    }
    // The password hash is kept but never shown, in a read or a list.
    let (_, client) = call(&ns, Method::GET, "/clients/car1", Some(TOKEN), None).await;
    assert!(client["properties"].get("passwordHash").is_none(), "{client}");
    let (_, list) = call(&ns, Method::GET, "/clients", Some(TOKEN), None).await;
    assert!(!list.to_string().contains("argon2"), "{list}");
    assert!(ns.resources().clients["car1"].password_hash.is_some());
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let ns = namespace();
    let cases = [
        (
            "/clientGroups/grp1",
            json!({"properties": {"query": "attributes.a = 1", "bogus": 1}}),
            "properties",
        ),
        (
            "/clientGroups/grp1",
            json!({"properties": {"query": "attributes.a = "}}),
            "properties.query: ",
        ),
        (
            "/clientGroups/grp1",
            json!({"props": {"query": "attributes.a = 1"}}),
            "properties: missing",
        ),
        (
            "/clientGroups/grp1",
            json!({"properties": {"query": "x = 1"}, "extra": 1}),
            "extra: unknown field",
        ),
        ("/clientGroups/grp1", json!(["not", "an", "object"]), "body: "),
        (
            "/clientGroups/no_underscores",
            json!({"properties": {"query": "attributes.a = 1"}}),
            "name: ",
        ),
        ("/clientGroups/$all", json!({"properties": {"query": "attributes.a = 1"}}), "name: $all"),
        (
            "/clients/car1",
            json!({"properties": {"passwordHash": "hunter2"}}),
            "properties.passwordHash: ",
        ),
        ("/clients/car1", json!({"properties": {"state": "Paused"}}), "properties.state: "),
        (
            "/permissionBindings/bnd1",
            json!({"properties": {"clientGroupName": "nobody", "topicSpaceName": "declared", "permission": "Publisher"}}),
            "properties.clientGroupName: no client group named \"nobody\"",
        ),
        (
            "/topicSpaces/tsp1",
            json!({"properties": {"topicTemplates": ["a/${client.attributes.x}x/#/b"]}}),
            "properties.topicTemplates[0]",
        ),
    ];
    for (uri, body, expected) in cases {
        let (status, answer) = put(&ns, uri, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "InvalidRequest");
        assert!(message(&answer).starts_with(expected), "{uri} {body}: {answer}");
    }
    assert!(ns.resources().client_groups.is_empty() && ns.resources().clients.is_empty());
}

#[tokio::test]
async fn changes_are_validated_against_the_whole_namespace() {
    let ns = namespace();
    put(&ns, "/clientGroups/fleet", json!({"properties": {"query": "attributes.a = 1"}})).await;
    let binding = json!({"properties": {"clientGroupName": "fleet", "topicSpaceName": "declared", "permission": "Subscriber"}});
    let (status, _) = put(&ns, "/permissionBindings/fleet-sub", binding).await;
    assert_eq!(status, StatusCode::CREATED);
    // The group is in use: deleting it would leave the binding dangling.
    let (status, body) = call(&ns, Method::DELETE, "/clientGroups/fleet", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("permissionBindings[fleet-sub].clientGroupName"), "{body}");
    // Config-declared resources belong to the config file.
    let (status, body) =
        call(&ns, Method::DELETE, "/topicSpaces/declared", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) =
        put(&ns, "/topicSpaces/declared", json!({"properties": {"topicTemplates": ["x"]}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = call(&ns, Method::DELETE, "/clientGroups/$all", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("built-in"), "{body}");
    // Authentication names are unique case-insensitively.
    put(&ns, "/clients/a1", json!({"properties": {"authenticationName": "Car"}})).await;
    let (status, body) =
        put(&ns, "/clients/a2", json!({"properties": {"authenticationName": "cAR"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("properties.authenticationName")
            || message(&body).contains("authenticationName"),
        "{body}"
    );
}

#[tokio::test]
async fn a_change_updates_the_authorizer_at_once() {
    use crate::hooks::{Authorizer, ClientIdentity};
    let ns = namespace();
    let identity = ClientIdentity {
        client_id: "c1".into(),
        authentication_name: "c1".into(),
        attributes: Default::default(),
    };
    assert!(ns.access().authorize_subscribe(&identity, "declared/x").is_err());
    let binding = json!({"properties": {"clientGroupName": "$all", "topicSpaceName": "declared", "permission": "Subscriber"}});
    put(&ns, "/permissionBindings/all-sub", binding).await;
    assert!(ns.access().authorize_subscribe(&identity, "declared/x").is_ok());
    call(&ns, Method::DELETE, "/permissionBindings/all-sub", Some(TOKEN), None).await;
    assert!(ns.access().authorize_subscribe(&identity, "declared/x").is_err());
}

mod topics {
    use super::*;

    const ARM: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/gridmq/providers/Microsoft.EventGrid/namespaces/gridmq";

    fn setup() -> (Arc<Namespace>, Arc<crate::routing::Router>) {
        let config = Config::parse(&format!(
            r#"
            [management]
            admin_token = "{TOKEN}"
            [topics.declared.eventSubscriptions.pull]
            deliveryMode = "Queue"
            "#
        ))
        .expect("config");
        let namespace =
            Namespace::open(config.namespace_section(), &[]).expect("namespace").expect("on");
        let plan = config.routing_section().plan().expect("plan");
        let router = crate::routing::Router::build(&config.namespace, plan, None, &[]);
        let router = router.expect("router");
        (namespace, router.expect("router"))
    }

    async fn send(
        (ns, router): &(Arc<Namespace>, Arc<crate::routing::Router>),
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = app(ns.clone(), TOKEN, Some(router.clone()))
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("call");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json")
        };
        (status, value)
    }

    fn event(id: &str) -> sinks::CloudEvent {
        sinks::CloudEvent::from_json_bytes(
            json!({"specversion": "1.0", "id": id, "source": "s", "type": "t", "data": {"n": 1}})
                .to_string()
                .as_bytes(),
        )
        .expect("event")
    }

    #[tokio::test]
    async fn topics_and_subscriptions_over_arm_paths() {
        let api = setup();
        let v = "?api-version=2025-02-15";
        let topic = format!("{ARM}/topics/orders{v}");
        let body = json!({"properties": {"eventRetentionInDays": 2, "inputSchema": "CloudEventSchemaV1_0", "publisherType": "Custom"}});
        let (status, created) = send(&api, Method::PUT, &topic, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["id"], format!("{ARM}/topics/orders"));
        assert_eq!(created["type"], "Microsoft.EventGrid/namespaces/topics");
        assert_eq!(created["properties"]["provisioningState"], "Succeeded");
        assert_eq!(created["properties"]["eventRetentionInDays"], 2);

        let sub = format!("{ARM}/topics/orders/eventSubscriptions/pull{v}");
        let queue = json!({"properties": {
            "deliveryConfiguration": {"deliveryMode": "Queue",
                "queue": {"receiveLockDurationInSeconds": 60, "maxDeliveryCount": 5}},
            "eventDeliverySchema": "CloudEventSchemaV1_0",
            "filtersConfiguration": {"includedEventTypes": ["t"]}}});
        let (status, created) = send(&api, Method::PUT, &sub, Some(queue.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["type"], "Microsoft.EventGrid/namespaces/topics/eventSubscriptions");
        let delivery = &created["properties"]["deliveryConfiguration"];
        assert_eq!(delivery["queue"]["maxDeliveryCount"], 5);
        assert_eq!(delivery["queue"]["eventTimeToLive"], "P2D");

        // Events wait in the queue; a change keeps them.
        let router = &api.1;
        router.publish_events("orders", vec![event("e1"), event("e2")]).expect("published");
        assert_eq!(router.queue("orders", "pull").expect("queue").waiting(), 2);
        let mut changed = queue.clone();
        changed["properties"]["deliveryConfiguration"]["queue"]["maxDeliveryCount"] = json!(7);
        let (status, got) = send(&api, Method::PUT, &sub, Some(changed)).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["properties"]["deliveryConfiguration"]["queue"]["maxDeliveryCount"], 7);
        assert_eq!(router.queue("orders", "pull").expect("queue").waiting(), 2);

        // The delivery mode cannot change.
        let push = json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Push",
            "push": {"destination": {"endpointType": "WebHook",
                "properties": {"endpointUrl": "http://127.0.0.1:9/hook"}}}}}});
        let (status, body) = send(&api, Method::PUT, &sub, Some(push)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            message(&body).split(':').next(),
            Some("properties.deliveryConfiguration.deliveryMode")
        );

        let (status, list) =
            send(&api, Method::GET, &format!("{ARM}/topics/orders/eventSubscriptions{v}"), None)
                .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["value"][0]["name"], "pull");
        let (status, list) = send(&api, Method::GET, &format!("{ARM}/topics{v}"), None).await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = list["value"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["declared", "orders"]);

        assert_eq!(send(&api, Method::DELETE, &sub, None).await.0, StatusCode::OK);
        assert!(router.queue("orders", "pull").is_none());
        assert_eq!(router.buffered(), 0, "the deleted subscription's events are settled");
        assert_eq!(send(&api, Method::DELETE, &sub, None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(send(&api, Method::DELETE, &topic, None).await.0, StatusCode::OK);
        assert!(!router.has_topic("orders"));
    }

    #[tokio::test]
    async fn declared_names_conflict_and_bad_bodies_name_the_field() {
        let api = setup();
        let (status, _) =
            send(&api, Method::PUT, "/topics/declared", Some(json!({"properties": {}}))).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) =
            send(&api, Method::DELETE, "/topics/declared/eventSubscriptions/pull", None).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, got) =
            send(&api, Method::GET, "/topics/declared/eventSubscriptions/pull", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["properties"]["deliveryConfiguration"]["deliveryMode"], "Queue");
        let bad = json!({"properties": {"eventRetentionInDays": 9}});
        let (status, body) = send(&api, Method::PUT, "/topics/t1x", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message(&body).starts_with("properties.eventRetentionInDays:"), "{body}");
        let bad = json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Queue",
            "queue": {"receiveLockDurationInSeconds": 900}}}});
        let (status, body) =
            send(&api, Method::PUT, "/topics/declared/eventSubscriptions/other", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            message(&body).starts_with(
                "properties.deliveryConfiguration.queue.receiveLockDurationInSeconds:"
            ),
            "{body}"
        );
        let (status, _) = send(
            &api,
            Method::PUT,
            "/topics/nope/eventSubscriptions/other",
            Some(json!({"properties": {}})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_changed_push_subscription_keeps_its_waiting_deliveries() {
        let api = setup();
        let router = &api.1;
        let topic = "/topics/alerts";
        let created = send(&api, Method::PUT, topic, Some(json!({"properties": {}}))).await;
        assert_eq!(created.0, StatusCode::CREATED);
        let hook = |count: u32| {
            json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Push",
                "push": {"maxDeliveryCount": count, "destination": {"endpointType": "WebHook",
                    "properties": {"endpointUrl": "http://127.0.0.1:9/hook"}}}}}})
        };
        let uri = "/topics/alerts/eventSubscriptions/hook";
        assert_eq!(send(&api, Method::PUT, uri, Some(hook(5))).await.0, StatusCode::CREATED);
        router.publish_events("alerts", vec![event("a"), event("b"), event("c")]).expect("admit");
        let waiting =
            || router.subscriptions().iter().find(|s| s.name == "hook").map(|s| s.waiting);
        assert_eq!(waiting(), Some(3));
        assert_eq!(send(&api, Method::PUT, uri, Some(hook(2))).await.0, StatusCode::OK);
        assert_eq!(waiting(), Some(3), "the new dispatcher holds the old one's deliveries");
        assert_eq!(router.buffered(), 3);
        assert_eq!(send(&api, Method::DELETE, topic, None).await.0, StatusCode::OK);
        assert_eq!(waiting(), None);
        assert_eq!(router.buffered(), 0, "a deleted topic's events are settled");
    }

    #[tokio::test]
    async fn patch_merges_into_what_was_created() {
        let api = setup();
        let created = json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Queue",
            "queue": {"receiveLockDurationInSeconds": 90, "maxDeliveryCount": 4}}}});
        let uri = "/topics/declared/eventSubscriptions/extra";
        assert_eq!(send(&api, Method::PUT, uri, Some(created)).await.0, StatusCode::CREATED);
        let patch =
            json!({"properties": {"deliveryConfiguration": {"queue": {"maxDeliveryCount": 8}}}});
        let (status, body) = send(&api, Method::PATCH, uri, Some(patch)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let queue = &body["properties"]["deliveryConfiguration"]["queue"];
        assert_eq!(
            (queue["maxDeliveryCount"].as_u64(), queue["receiveLockDurationInSeconds"].as_u64()),
            (Some(8), Some(90))
        );
        let patch = json!({"properties": {"eventRetentionInDays": 3}});
        let (status, _) = send(&api, Method::PATCH, "/topics/absent", Some(patch.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = send(&api, Method::PATCH, "/topics/declared", Some(patch)).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn other_arm_ids_are_not_found_and_the_token_comes_first() {
        let api = setup();
        let other = ARM.replace("resourceGroups/gridmq", "resourceGroups/elsewhere");
        let (status, body) = send(&api, Method::GET, &format!("{other}/clients"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "ResourceGroupNotFound");
        let (status, _) = call(&api.0, Method::GET, &format!("{other}/clients"), None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = send(&api, Method::GET, ARM, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], ARM);
        let (status, body) =
            send(&api, Method::GET, &format!("{ARM}/clients?api-version=2025-02-15"), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"value": []})));
    }
}
