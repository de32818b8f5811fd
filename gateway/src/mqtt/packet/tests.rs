use super::*;

#[test]
fn options_byte_round_trips() {
    for byte in [0x00, 0x01, 0x02, 0x06, 0x0A, 0x11, 0x22, 0x2E] {
        let options = SubscriptionOptions::from_byte(byte).expect("a valid byte");
        assert_eq!(options.to_byte(), byte, "{byte:#04x}");
    }
}

#[test]
fn reserved_options_are_refused() {
    assert_eq!(SubscriptionOptions::from_byte(0x40), Err(OptionsByteError::ReservedBits));
    assert_eq!(SubscriptionOptions::from_byte(0x03), Err(OptionsByteError::ReservedQoS));
    assert_eq!(SubscriptionOptions::from_byte(0x30), Err(OptionsByteError::ReservedRetainHandling));
}
