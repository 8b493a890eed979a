//! A TCP relay that can cut one process off from a server, as a network partition does: while
//! cut, it forwards nothing in either direction and holds new connections unanswered, so the
//! process sees its requests time out rather than its connections refused. Healed, it forwards
//! again on the connections that are still open. The local cluster's fault runs put one engine
//! behind it to cut that engine (and only it) off from Redis.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a local port to `upstream`.
pub struct Partition {
    address: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    /// Starts relaying from a free local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (cut, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    // A connection opened during a cut waits for the heal before it reaches
                    // the server, like a SYN that gets no answer until then.
                    if !wait_healed(watching.clone()).await {
                        return;
                    }
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, watching).await;
                    }
                });
            }
        });
        Ok(Self { address, cut, task })
    }

    /// Where the process should connect instead of the server.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts the relay (`true`) or heals it (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the relay is not cut; `false` once the relay is gone.
async fn wait_healed(mut watching: watch::Receiver<bool>) -> bool {
    watching.wait_for(|cut| !*cut).await.is_ok()
}

/// Copies both ways between `client` and `server`, pausing while cut.
async fn relay(client: TcpStream, server: TcpStream, watching: watch::Receiver<bool>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, watching.clone()) => {}
        _ = pump(server_read, client_write, watching) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    watching: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        // Nothing is read while cut: the sender's bytes wait in the kernel's buffers.
        if !wait_healed(watching.clone()).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Cut mid-wait: stop reading until healed.
            _ = cut_starts(watching.clone()) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a cut are held until the heal, as the network would.
        if !wait_healed(watching.clone()).await || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Completes when the relay is cut.
async fn cut_starts(mut watching: watch::Receiver<bool>) {
    if watching.wait_for(|cut| *cut).await.is_err() {
        // The relay is gone: never complete, the read decides.
        std::future::pending::<()>().await;
    }
}
