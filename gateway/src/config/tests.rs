use super::*;

#[test]
fn empty_text_is_the_embedded_default() {
    let config = Config::parse("").expect("empty config");
    assert_eq!(config.server.listen, SocketAddr::from(([127, 0, 0, 1], 1883)));
    assert_eq!(config.mqtt.max_keep_alive, 1160);
}

#[test]
fn unknown_field_is_named() {
    let error = Config::parse("[mqtt]\nmax_keepalive = 3\n").expect_err("unknown field");
    assert!(error.to_string().contains("max_keepalive"), "{error}");
}

#[test]
fn bad_value_names_the_field() {
    let error = Config::parse("[mqtt]\nreceive_maximum = 0\n").expect_err("zero receive maximum");
    assert!(error.to_string().contains("mqtt.receive_maximum"), "{error}");
    let error = Config::parse("[mqtt]\nqueue_full = \"explode\"\n").expect_err("bad policy");
    assert!(error.to_string().contains("queue_full"), "{error}");
}

#[test]
fn the_example_config_is_the_default() {
    let text = include_str!("../../../schemas/gridmq.example.toml");
    let config = Config::parse(text).expect("example config parses");
    let default = Config::default();
    assert_eq!(config.server.listen, default.server.listen);
    assert_eq!(config.mqtt.max_packet_size, default.mqtt.max_packet_size);
    assert_eq!(config.mqtt.queue_full, default.mqtt.queue_full);
    assert_eq!(config.mqtt.max_queued_messages, default.mqtt.max_queued_messages);
}
