//! A downstream service that consumes gridmq's webhook deliveries with the CloudEvents SDK
//! (`cloudevents-sdk`) and prints every event it receives.
//!
//! ```text
//! cargo run -p gridmq-examples --bin cloudevents_consumer -- --listen 127.0.0.1:8000
//! ```
//!
//! Point a webhook subscription at `http://127.0.0.1:8000/hook` (any path works), in any
//! content mode: structured, batched (`maxEventsPerBatch` above 1) or binary. The parsing is
//! `gridmq_examples::cloudevents_consumer`, which `examples/tests/cloudevents_consumer.rs` drives
//! with an in-process gateway.

use std::net::SocketAddr;

use clap::Parser;
use gridmq_examples::cloudevents_consumer;

/// Prints the CloudEvents gridmq delivers to a webhook, as the CloudEvents SDK reads them.
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
}

/// Events parsed but not yet handled; past this, deliveries wait for the printer.
const QUEUE: usize = 64;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("CloudEvents consumer listening on http://{}/hook", listener.local_addr()?);
    let (sink, mut events) = tokio::sync::mpsc::channel::<cloudevents_consumer::Received>(QUEUE);
    // The handling a real service would do; it ends when the server, the only sender, is gone.
    let printer = tokio::spawn(async move {
        while let Some(received) = events.recv().await {
            println!("{:?} {}", received.mode, received.event);
        }
    });
    axum::serve(listener, cloudevents_consumer::router(sink))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    printer.await.map_err(std::io::Error::other)
}
