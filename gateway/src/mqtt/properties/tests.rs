use bytes::Bytes;

use super::Properties;

/// `is_empty` lists every field by hand; each one set alone must make the set non-empty.
#[test]
fn any_one_property_makes_the_set_non_empty() {
    let one = |set: fn(&mut Properties)| {
        let mut p = Properties::default();
        set(&mut p);
        p
    };
    let each: Vec<Properties> = vec![
        one(|p| p.payload_format_indicator = Some(1)),
        one(|p| p.message_expiry_interval = Some(1)),
        one(|p| p.content_type = Some("a".into())),
        one(|p| p.response_topic = Some("a".into())),
        one(|p| p.correlation_data = Some(Bytes::from_static(b"a"))),
        one(|p| p.subscription_identifiers.push(1)),
        one(|p| p.session_expiry_interval = Some(1)),
        one(|p| p.assigned_client_identifier = Some("a".into())),
        one(|p| p.server_keep_alive = Some(1)),
        one(|p| p.authentication_method = Some("a".into())),
        one(|p| p.authentication_data = Some(Bytes::from_static(b"a"))),
        one(|p| p.request_problem_information = Some(1)),
        one(|p| p.will_delay_interval = Some(1)),
        one(|p| p.request_response_information = Some(1)),
        one(|p| p.response_information = Some("a".into())),
        one(|p| p.server_reference = Some("a".into())),
        one(|p| p.reason_string = Some("a".into())),
        one(|p| p.receive_maximum = Some(1)),
        one(|p| p.topic_alias_maximum = Some(1)),
        one(|p| p.topic_alias = Some(1)),
        one(|p| p.maximum_qos = Some(1)),
        one(|p| p.retain_available = Some(1)),
        one(|p| p.user_properties.push(("a".into(), "b".into()))),
        one(|p| p.maximum_packet_size = Some(1)),
        one(|p| p.wildcard_subscription_available = Some(1)),
        one(|p| p.subscription_identifier_available = Some(1)),
        one(|p| p.shared_subscription_available = Some(1)),
    ];
    assert!(Properties::default().is_empty());
    assert_eq!(Properties::default(), Properties::EMPTY);
    for (i, p) in each.iter().enumerate() {
        assert!(!p.is_empty(), "property {i} set alone: {p:?}");
        assert_ne!(*p, Properties::EMPTY, "property {i}");
    }
}

/// The empty set is shared without an allocation and reads as empty.
#[test]
fn empty_properties_share_nothing_and_read_as_empty() {
    let shared = Properties::default().into_shared();
    assert!(shared.is_empty());
    assert_eq!(shared, Properties::EMPTY.into_shared());
    let set = Properties { content_type: Some("text/plain".into()), ..Properties::default() };
    let shared = set.clone().into_shared();
    assert_eq!(*shared, set);
    assert_ne!(shared, Properties::default().into_shared());
}
