//! `xosfs-delay-proxy`: a TCP proxy that holds every byte back for a fixed time in each
//! direction, so `scripts/bench.sh --wan` can put the test server behind a WAN-like round
//! trip. The kernel the benchmarks run on has no netem (`tc qdisc ... netem` is unknown),
//! hence a proxy. It delays without throttling: each direction reads as fast as its sender
//! writes, stamps every chunk with its arrival time, and a writer sends the chunk once it is
//! due, so a stream flows as through a long pipe rather than stop-and-wait. The first bytes
//! of a connection also wait one extra round trip: the TCP handshake a real path would cost.
//! Prints `listening on ADDR:PORT` once bound.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Largest chunk read at once.
const CHUNK: usize = 256 << 10;
/// Chunks in flight per direction before reading pauses (bounds memory).
const IN_FLIGHT: usize = 1024;

#[derive(Parser)]
#[command(about = "TCP proxy adding a fixed delay in each direction")]
struct Opt {
    /// Address to accept connections on (port 0: any free port).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Address every connection is forwarded to.
    #[arg(long, value_name = "ADDR:PORT")]
    target: SocketAddr,
    /// One-way delay in milliseconds; the round trip grows by twice this.
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let opt = Opt::parse();
    let delay = Duration::from_millis(opt.delay_ms);
    let listener = TcpListener::bind(opt.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let accepted = Instant::now();
        let target = opt.target;
        tokio::spawn(async move {
            if let Err(e) = proxy(client, target, accepted, delay).await {
                eprintln!("xosfs-delay-proxy: {target}: {e}");
            }
        });
    }
}

async fn proxy(client: TcpStream, target: SocketAddr, accepted: Instant, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(target).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The client's bytes count as sent no earlier than its handshake would have completed.
    tokio::join!(
        pipe(client_read, server_write, delay, accepted + 2 * delay),
        pipe(server_read, client_write, delay, accepted),
    );
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it arrived (or after `start`, if later).
/// When `from` ends, `to` is shut down for writing once everything before has gone out,
/// so half-closed connections stay half-closed.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, start: Instant) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(CHUNK);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let due = Instant::now().max(start) + delay;
            if tx.send((due, buf.split().freeze())).await.is_err() {
                break;
            }
        }
        // Dropping `tx` lets the writer drain the queue and then shut down.
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
