//! The baseline: a bare relay on the same crates as Warmline (tokio + tungstenite),
//! nothing else. `GET /pair/KEY/a` and `/pair/KEY/b` are paired by KEY; every text
//! frame is answered at once with `{"type":"ack"}` (acks come in order, so a client
//! matches them first in, first out) and forwarded as is to the partner; binary
//! frames are forwarded. Each connection has one writer task fed by a bounded queue
//! (256 frames), as Warmline's connections have. Nothing is parsed or stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

type Tx = mpsc::Sender<Message>;
type Slots = Arc<Mutex<HashMap<String, (Tx, oneshot::Sender<Tx>)>>>;

const ACK: &str = r#"{"type":"ack"}"#;

pub async fn run(listen: SocketAddr) -> Result<()> {
    crate::common::check_loopback(&listen)?;
    let listener = TcpListener::bind(listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    let slots: Slots = Arc::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, go on.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let slots = slots.clone();
        tokio::spawn(async move {
            let _ = connection(stream, slots).await;
        });
    }
}

async fn connection(stream: TcpStream, slots: Slots) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, resp: Response| {
            path = req.uri().path().to_owned();
            Ok(resp)
        },
        Some(crate::common::ws_config()),
    )
    .await?;
    let key = path
        .trim_end_matches("/a")
        .trim_end_matches("/b")
        .to_owned();
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // Pair: the second to arrive hands its queue to the first.
    let waiting = {
        let mut slots = slots.lock().unwrap();
        match slots.remove(&key) {
            Some((partner, handback)) => {
                let _ = handback.send(tx.clone());
                Ok(partner)
            }
            None => {
                let (handback, rx) = oneshot::channel();
                slots.insert(key.clone(), (tx.clone(), handback));
                Err(rx)
            }
        }
    };
    let partner = match waiting {
        Ok(p) => Some(p),
        Err(rx) => {
            // Wait for the partner while watching this socket for a close.
            tokio::select! {
                p = rx => p.ok(),
                _ = async {
                    while let Some(Ok(m)) = stream.next().await {
                        if m.is_close() { break; }
                    }
                } => {
                    slots.lock().unwrap().remove(&key);
                    None
                }
            }
        }
    };
    if let Some(partner) = partner {
        let ack = Message::text(ACK);
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Text(_) => {
                    if tx.send(ack.clone()).await.is_err() || partner.send(m).await.is_err() {
                        break;
                    }
                }
                Message::Binary(_) => {
                    if partner.send(m).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    drop(tx);
    writer.abort();
    Ok(())
}
