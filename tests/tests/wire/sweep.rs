//! Sweeps and load: every possible first byte after CONNECT, many attackers at once, and an
//! attacker that holds a partial packet while others work.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use gateway_tests::Gridmq;
use gateway_tests::raw::{
    Healthy, PINGREQ, PINGRESP, RawClient, WAIT, disconnect_reason, expect_disconnect, publish_v5,
    subscribe_v5,
};

/// What the broker must do with `[first_byte, 0x00]` (an empty body) on a 5.0 connection:
/// `Ok(None)` answer PINGRESP and stay, `Ok(Some(codes))` DISCONNECT with one of `codes` then
/// close, `Err(())` close without a word (a client's normal DISCONNECT).
fn v5_expectation(first_byte: u8) -> Result<Option<&'static [u8]>, ()> {
    let (kind, flags) = (first_byte >> 4, first_byte & 0x0F);
    // §2.1.3: the flags every type but PUBLISH must carry.
    let required = match kind {
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    Ok(Some(match kind {
        0 => &[0x81, 0x82],
        // PUBLISH: DUP on QoS 0 (code not named, §3.3.1.1) competes with the missing topic name.
        3 if flags & 0x0E == 0x08 => &[0x81, 0x82],
        3 => &[0x81], // PUBLISH: QoS 3 or no topic name.
        _ if flags != required => &[0x81],
        1 => &[0x81, 0x82], // CONNECT with no body, and a second one.
        2 | 9 | 11 | 13 => &[0x81, 0x82], // server-to-client packets, sent by a client.
        4..=8 | 10 => &[0x81], // no packet id.
        12 => return Ok(None),
        14 => return Err(()),
        15 => &[0x82], // AUTH without an authentication method.
        _ => unreachable!(),
    }))
}

/// Sends `[first_byte, 0x00]` on a fresh 5.0 connection and checks the answer.
async fn v5_first_byte(addr: std::net::SocketAddr, first_byte: u8) -> Result<()> {
    let (mut client, _) = RawClient::connect_v5(addr, &format!("sweep-{first_byte:02x}")).await?;
    client.send(&[first_byte, 0x00]).await?;
    match v5_expectation(first_byte) {
        Ok(None) => {
            let pong = client.expect_packet(WAIT).await?;
            ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
            client.send(&PINGREQ).await?;
            let pong = client.expect_packet(WAIT).await?;
            ensure!(pong == PINGRESP, "expected a second PINGRESP, got {pong:02X?}");
        }
        Ok(Some(codes)) => {
            let packet = client.expect_packet(WAIT).await.context("waiting for DISCONNECT")?;
            let reason = disconnect_reason(&packet)?;
            ensure!(
                codes.contains(&reason),
                "expected DISCONNECT with a reason in {codes:02X?}, got {packet:02X?}"
            );
            client.expect_closed(WAIT).await?;
        }
        Err(()) => client.expect_closed(WAIT).await?,
    }
    Ok(())
}

/// Every first byte 0x00..=0xFF with an empty body after a 5.0 CONNECT, 256 connections at once
/// on one broker: each gets the answer the spec gives it, and the broker survives.
#[tokio::test]
async fn v5_every_first_byte_with_empty_body() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let tasks: Vec<_> =
        (0..=255u8).map(|b| (b, tokio::spawn(v5_first_byte(broker.addr, b)))).collect();
    let mut failures = Vec::new();
    for (b, task) in tasks {
        let outcome = tokio::time::timeout(WAIT * 4, task).await;
        match outcome {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => failures.push(format!("[{b:02X}, 00]: {error:#}")),
            Ok(Err(join)) => failures.push(format!("[{b:02X}, 00]: task failed: {join}")),
            Err(_) => failures.push(format!("[{b:02X}, 00]: timed out")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of 256 first bytes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    healthy.check().await
}

/// The same on 3.1.1, where every malformed packet is answered by a bare close; PINGREQ gets
/// PINGRESP and DISCONNECT a close.
#[tokio::test]
async fn v3_every_first_byte_with_empty_body() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let tasks: Vec<_> = (0..=255u8)
        .map(|b| {
            let addr = broker.addr;
            (
                b,
                tokio::spawn(async move {
                    let mut client = RawClient::connect_v3(addr, &format!("sweep-{b:02x}")).await?;
                    client.send(&[b, 0x00]).await?;
                    if b == 0xC0 {
                        let pong = client.expect_packet(WAIT).await?;
                        ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
                        return Ok(());
                    }
                    client.expect_closed(WAIT).await
                }),
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (b, task) in tasks {
        match tokio::time::timeout(WAIT * 4, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => failures.push(format!("[{b:02X}, 00]: {error:#}")),
            Ok(Err(join)) => failures.push(format!("[{b:02X}, 00]: task failed: {join}")),
            Err(_) => failures.push(format!("[{b:02X}, 00]: timed out")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of 256 first bytes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    healthy.check().await
}

/// Connections that send garbage before any CONNECT, 100 at once: all closed, none answered
/// with anything but (for a CONNECT-looking byte string) a refusing CONNACK.
#[tokio::test]
async fn many_garbage_connections_at_once() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let tasks: Vec<_> = (0..100u32)
        .map(|i| {
            let addr = broker.addr;
            // A fixed pseudo-random byte string per connection (xorshift), 1 to 64 bytes long.
            let mut state = 0x9E37_79B9u32 ^ i.wrapping_mul(0x85EB_CA6B);
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state
            };
            let len = 1 + (next() % 64) as usize;
            let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await?;
                client.send(&garbage).await?;
                client.shutdown_write().await?;
                while let Some(packet) = client.read_packet(WAIT).await? {
                    let refusal =
                        packet[0] == 0x20 && packet.get(3).is_some_and(|&code| code != 0x00);
                    if !refusal {
                        bail!("garbage {garbage:02X?} was answered with {packet:02X?}");
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(WAIT * 4, task).await.map_err(|_| anyhow!("timed out"))???;
    }
    healthy.check().await
}

/// A client that stops in the middle of a PUBLISH does not hold up anyone else: while it holds
/// the partial packet the bystander works, and when it completes the packet it is delivered.
#[tokio::test]
async fn partial_packet_does_not_block_others() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut slow, _) = RawClient::connect_v5(broker.addr, "slow").await?;
    slow.send(&subscribe_v5(1, "slow/echo", 0x00)).await?;
    slow.expect_packet(WAIT).await?;
    let publish = publish_v5("healthy/slow", 0, 0, &[], b"eventually");
    slow.send(&publish[..5]).await?;
    healthy.check().await.context("while another client holds a partial PUBLISH")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.send(&publish[5..]).await?;
    healthy.expect_message("healthy/slow", &[], b"eventually").await?;
    healthy.check().await
}

/// A malformed packet followed, in the same write, by more input than the broker will ever read:
/// the client still gets the DISCONNECT 0x81 before the close (the broker must not reset the
/// connection under it by closing with unread input).
#[tokio::test]
async fn malformed_packet_followed_by_more_input() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "flood").await?;
    let mut input = vec![0x60, 0x02, 0x00, 0x01];
    for _ in 0..64 {
        input.extend(publish_v5("flood/t", 0, 0, &[], &[b'f'; 1000]));
    }
    // The broker may stop reading before all of it is written: a failed write is fine.
    let _ = client.send(&input).await;
    expect_disconnect(&mut client, &[0x81]).await?;
    healthy.check().await
}
