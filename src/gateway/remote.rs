//! The routing owner's side of sockets that other nodes hold (several nodes,
//! docs/scaling.md). Such a socket is served here exactly like a local one: the
//! same admission, the same session, the same hub; only its frames travel through
//! the backplane, batched per node (`backplane::envelope`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

use super::connection::{Link, Socket};
use super::{App, admit, role_of, run};
use crate::backplane::envelope::{Frame, Opening};
use crate::protocol::CloseCode;

/// Frames from a remote client waiting for its session before it is closed.
const INBOUND_QUEUE: usize = 256;

/// Frames for one node, on their way to its channel.
pub type ToNode = mpsc::Sender<(u64, Frame)>;

/// A socket another node holds, as its session here sees it.
pub struct RemoteSocket {
    conn: u64,
    out: ToNode,
    rx: mpsc::Receiver<Frame>,
}

impl RemoteSocket {
    pub async fn send(&mut self, msg: Message) -> Result<(), axum::Error> {
        let frame = match msg {
            Message::Text(text) => Frame::Text(text.into()),
            Message::Binary(bytes) => Frame::Binary(bytes),
            Message::Ping(_) => Frame::Ping,
            Message::Pong(_) => return Ok(()),
            Message::Close(close) => {
                let (code, reason) =
                    close.map_or((1000, String::new()), |c| (c.code, c.reason.to_string()));
                Frame::Close { code, reason }
            }
        };
        self.out
            .send((self.conn, frame))
            .await
            .map_err(|_| axum::Error::new("the node holding this socket is gone"))
    }

    /// The client's next frame; `None` when its socket (or its node) is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.rx.recv().await? {
                Frame::Text(bytes) => {
                    // Checked when the batch was read.
                    if let Ok(text) = Utf8Bytes::try_from(bytes) {
                        return Some(Message::Text(text));
                    }
                }
                Frame::Binary(bytes) => return Some(Message::Binary(bytes)),
                Frame::Pong => return Some(Message::Pong(Bytes::new())),
                Frame::Gone => return None,
                _ => {}
            }
        }
    }
}

/// Makes the queue of frames to a node (and whatever publishes it).
pub type Publishers = Arc<dyn Fn(&str) -> ToNode + Send + Sync>;

/// The sockets other nodes hold for this owner. Owned by the task that reads this
/// node's channel: no lock.
pub struct Remotes {
    app: Arc<App>,
    publishers: Publishers,
    to_node: HashMap<Arc<str>, ToNode>,
    inbound: HashMap<(Arc<str>, u64), mpsc::Sender<Frame>>,
}

impl Remotes {
    pub fn new(app: Arc<App>, publishers: Publishers) -> Remotes {
        Remotes {
            app,
            publishers,
            to_node: HashMap::new(),
            inbound: HashMap::new(),
        }
    }

    fn node(&mut self, node: &str) -> (Arc<str>, ToNode) {
        if let Some((name, tx)) = self.to_node.get_key_value(node)
            && !tx.is_closed()
        {
            return (name.clone(), tx.clone());
        }
        let name: Arc<str> = node.into();
        let tx = (self.publishers)(node);
        self.to_node.insert(name.clone(), tx.clone());
        (name, tx)
    }

    /// Frames that `sender` relayed from its clients.
    pub async fn receive(&mut self, sender: &str, frames: Vec<(u64, Frame)>) {
        let (node, to) = self.node(sender);
        for (conn, frame) in frames {
            match frame {
                Frame::Open(opening) => self.open(&node, &to, conn, opening).await,
                Frame::Gone => {
                    if let Some(tx) = self.inbound.remove(&(node.clone(), conn)) {
                        let _ = tx.try_send(Frame::Gone);
                    }
                }
                frame @ (Frame::Text(_) | Frame::Binary(_) | Frame::Pong) => {
                    let key = (node.clone(), conn);
                    let Some(tx) = self.inbound.get(&key) else {
                        let close = Frame::Close {
                            code: CloseCode::ServiceRestart.code(),
                            reason:
                                "this connection is not known here any more; reconnect and resume"
                                    .into(),
                        };
                        let _ = to.try_send((conn, close));
                        continue;
                    };
                    match tx.try_send(frame) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.inbound.remove(&key);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Never block the channel (every remote client) for one.
                            self.inbound.remove(&key);
                            let close = Frame::Close {
                                code: CloseCode::Policy.code(),
                                reason: "frames arrived faster than the gateway could take them"
                                    .into(),
                            };
                            let _ = to.try_send((conn, close));
                        }
                    }
                }
                // Only the owner sends these.
                Frame::Accept | Frame::Reject { .. } | Frame::Ping | Frame::Close { .. } => {}
            }
        }
    }

    async fn open(&mut self, node: &Arc<str>, to: &ToNode, conn: u64, opening: Opening) {
        let query: HashMap<String, String> = url_query(&opening.query);
        let mut headers = HeaderMap::new();
        for (name, value) in &opening.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        match admit(&self.app, opening.endpoint, &query, &headers) {
            Err(response) => {
                let status = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                    .await
                    .unwrap_or_default();
                let _ = to.send((conn, Frame::Reject { status, body })).await;
            }
            Ok(admission) => {
                let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
                self.inbound.insert((node.clone(), conn), tx);
                let _ = to.send((conn, Frame::Accept)).await;
                let socket = RemoteSocket {
                    conn,
                    out: to.clone(),
                    rx,
                };
                let link = Box::new(Link::new(
                    self.app.clone(),
                    Socket::Remote(socket),
                    role_of(opening.endpoint),
                ));
                self.app.tracker.spawn(run(link, admission));
            }
        }
    }

    /// Nodes holding sockets here.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.inbound.keys().map(|(n, _)| n.to_string()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// A node died (its registration expired): its sockets are gone.
    pub fn forget(&mut self, node: &str) {
        self.inbound.retain(|(n, _), tx| {
            let keep = &**n != node;
            if !keep {
                let _ = tx.try_send(Frame::Gone);
            }
            keep
        });
        self.to_node.remove(node);
    }
}

fn url_query(query: &str) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}
