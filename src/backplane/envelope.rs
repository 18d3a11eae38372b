//! What crosses nodes on a node's Redis channel: a batch of frames for, or from,
//! WebSocket connections held by another node. Binary and allocation-light: the
//! payload of a text frame is copied once into the batch and once out of it.
//!
//! A batch is `[sender length u8][sender id]` then records, each
//! `[kind u8][conn u64 LE][payload length u32 LE][payload]`.

use bytes::Bytes;

/// A socket's role, named by the endpoint it connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Customer,
    Agent,
    Media,
}

impl Endpoint {
    fn byte(self) -> u8 {
        match self {
            Endpoint::Customer => 1,
            Endpoint::Agent => 2,
            Endpoint::Media => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Endpoint> {
        match b {
            1 => Some(Endpoint::Customer),
            2 => Some(Endpoint::Agent),
            3 => Some(Endpoint::Media),
            _ => None,
        }
    }
}

/// The upgrade request as the owner needs it to admit the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub endpoint: Endpoint,
    /// The raw query string (without `?`).
    pub query: String,
    /// The headers admission looks at (Origin, Host, Authorization).
    pub headers: Vec<(String, String)>,
}

/// One record of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Edge to owner: a client asks to connect.
    Open(Opening),
    /// Owner to edge: admitted; complete the upgrade.
    Accept,
    /// Owner to edge: refused; answer the upgrade with this status and JSON body.
    Reject {
        status: u16,
        body: Bytes,
    },
    Text(Bytes),
    Binary(Bytes),
    Ping,
    Pong,
    /// Owner to edge: close the socket with this code and reason.
    Close {
        code: u16,
        reason: String,
    },
    /// Edge to owner: the socket is gone.
    Gone,
}

const OPEN: u8 = 1;
const ACCEPT: u8 = 2;
const REJECT: u8 = 3;
const TEXT: u8 = 4;
const BINARY: u8 = 5;
const PING: u8 = 6;
const PONG: u8 = 7;
const CLOSE: u8 = 8;
const GONE: u8 = 9;

/// A batch being written.
pub struct Batch {
    buf: Vec<u8>,
    header: usize,
}

impl Batch {
    pub fn new(sender: &str) -> Batch {
        let id = &sender.as_bytes()[..sender.len().min(255)];
        let mut buf = Vec::with_capacity(4096);
        buf.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        buf.extend_from_slice(id);
        let header = buf.len();
        Batch { buf, header }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.header
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Empties the batch (keeps the sender and the allocation).
    pub fn clear(&mut self) {
        self.buf.truncate(self.header);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn push(&mut self, conn: u64, frame: &Frame) {
        let (kind, start) = (self.buf.len(), self.buf.len() + 1);
        self.buf.push(0);
        self.buf.extend_from_slice(&conn.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        let body = self.buf.len();
        let code = match frame {
            Frame::Open(o) => {
                self.buf.push(o.endpoint.byte());
                put_str(&mut self.buf, &o.query);
                for (name, value) in &o.headers {
                    put_str(&mut self.buf, name);
                    put_str(&mut self.buf, value);
                }
                OPEN
            }
            Frame::Accept => ACCEPT,
            Frame::Reject { status, body } => {
                self.buf.extend_from_slice(&status.to_le_bytes());
                self.buf.extend_from_slice(body);
                REJECT
            }
            Frame::Text(b) => {
                self.buf.extend_from_slice(b);
                TEXT
            }
            Frame::Binary(b) => {
                self.buf.extend_from_slice(b);
                BINARY
            }
            Frame::Ping => PING,
            Frame::Pong => PONG,
            Frame::Close { code, reason } => {
                self.buf.extend_from_slice(&code.to_le_bytes());
                self.buf.extend_from_slice(reason.as_bytes());
                CLOSE
            }
            Frame::Gone => GONE,
        };
        self.buf[kind] = code;
        let len = u32::try_from(self.buf.len() - body).unwrap_or(u32::MAX);
        self.buf[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A read batch: its sender, and each record's connection and frame.
pub type Decoded = (String, Vec<(u64, Frame)>);

/// Reads a batch: the sender, then each `(conn, frame)`. `Err`: the batch is
/// malformed (it did not come from a Warmline node of this version).
pub fn decode(batch: &Bytes) -> Result<Decoded, &'static str> {
    let mut r = Reader { buf: batch, pos: 0 };
    let sender_len = usize::from(r.u8()?);
    let sender = std::str::from_utf8(r.take(sender_len)?)
        .map_err(|_| "sender is not UTF-8")?
        .to_owned();
    let mut out = Vec::new();
    while r.pos < batch.len() {
        let kind = r.u8()?;
        let conn = u64::from_le_bytes(r.array()?);
        let len = u32::from_le_bytes(r.array()?) as usize;
        let start = r.pos;
        r.take(len)?;
        let body = batch.slice(start..start + len);
        out.push((conn, frame(kind, body)?));
    }
    Ok((sender, out))
}

fn frame(kind: u8, body: Bytes) -> Result<Frame, &'static str> {
    // No node writes a body on these; reading one would drop bytes without a word.
    if matches!(kind, ACCEPT | PING | PONG | GONE) && !body.is_empty() {
        return Err("a record of a kind without a body has one");
    }
    Ok(match kind {
        OPEN => {
            let mut r = Reader { buf: &body, pos: 0 };
            let endpoint = Endpoint::from_byte(r.u8()?).ok_or("unknown endpoint")?;
            let query = r.string()?;
            let mut headers = Vec::new();
            while r.pos < body.len() {
                headers.push((r.string()?, r.string()?));
            }
            Frame::Open(Opening {
                endpoint,
                query,
                headers,
            })
        }
        ACCEPT => Frame::Accept,
        REJECT => {
            if body.len() < 2 {
                return Err("short reject");
            }
            Frame::Reject {
                status: u16::from_le_bytes([body[0], body[1]]),
                body: body.slice(2..),
            }
        }
        TEXT => {
            std::str::from_utf8(&body).map_err(|_| "text frame is not UTF-8")?;
            Frame::Text(body)
        }
        BINARY => Frame::Binary(body),
        PING => Frame::Ping,
        PONG => Frame::Pong,
        CLOSE => {
            if body.len() < 2 {
                return Err("short close");
            }
            Frame::Close {
                code: u16::from_le_bytes([body[0], body[1]]),
                reason: String::from_utf8_lossy(&body[2..]).into_owned(),
            }
        }
        GONE => Frame::Gone,
        _ => return Err("unknown record kind"),
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("truncated batch")?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let s = self.take(len)?;
        Ok(std::str::from_utf8(s)
            .map_err(|_| "string is not UTF-8")?
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_record_survives_a_round_trip_in_order() {
        let frames = vec![
            (
                1,
                Frame::Open(Opening {
                    endpoint: Endpoint::Agent,
                    query: "token=abc&x=1".into(),
                    headers: vec![("origin".into(), "https://shop.example".into())],
                }),
            ),
            (2, Frame::Accept),
            (
                3,
                Frame::Reject {
                    status: 401,
                    body: Bytes::from_static(b"{\"code\":\"unauthorized\"}"),
                },
            ),
            (
                u64::MAX,
                Frame::Text(Bytes::from_static("héllo".as_bytes())),
            ),
            (5, Frame::Binary(Bytes::from_static(&[0, 1, 2, 255]))),
            (6, Frame::Ping),
            (7, Frame::Pong),
            (
                8,
                Frame::Close {
                    code: 1012,
                    reason: "reconnect".into(),
                },
            ),
            (9, Frame::Gone),
            (10, Frame::Text(Bytes::new())),
        ];
        let mut batch = Batch::new("node-a");
        for (conn, f) in &frames {
            batch.push(*conn, f);
        }
        let bytes = Bytes::copy_from_slice(batch.bytes());
        let (sender, got) = decode(&bytes).expect("decodes");
        assert_eq!(sender, "node-a");
        assert_eq!(got, frames);
        batch.clear();
        assert!(batch.is_empty());
        let (_, none) = decode(&Bytes::copy_from_slice(batch.bytes())).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_truncated_or_foreign_batch_is_an_error_not_a_panic() {
        let mut batch = Batch::new("n");
        batch.push(1, &Frame::Text(Bytes::from_static(b"hello")));
        let bytes = batch.bytes().to_vec();
        for cut in 0..bytes.len() {
            let part = Bytes::copy_from_slice(&bytes[..cut]);
            if cut == 2 {
                // Sender only: an empty batch.
                assert!(decode(&part).is_ok());
            } else {
                assert!(decode(&part).is_err(), "cut at {cut}");
            }
        }
        let mut bad = bytes.clone();
        bad[2] = 99;
        assert!(decode(&Bytes::from(bad)).is_err());
        let mut invalid_text = bytes;
        let last = invalid_text.len() - 1;
        invalid_text[last] = 0xff;
        assert!(decode(&Bytes::from(invalid_text)).is_err());
    }

    /// Found by the `media_stream` fuzz target: a `pong` (or `ping`, `accept`,
    /// `gone`) record with a body was read as a bare `pong`, its bytes dropped; a
    /// batch must decode to frames that encode back to the same bytes.
    #[test]
    fn a_body_on_a_record_that_carries_none_is_refused() {
        for kind in [ACCEPT, PING, PONG, GONE] {
            let mut bytes = vec![1, b'n', kind];
            bytes.extend_from_slice(&7u64.to_le_bytes());
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.push(0);
            assert!(decode(&Bytes::from(bytes.clone())).is_err(), "kind {kind}");
            // Without the body it is the frame a node writes.
            bytes.pop();
            bytes[11..15].copy_from_slice(&0u32.to_le_bytes());
            let (_, frames) = decode(&Bytes::from(bytes)).expect("an empty record");
            let mut batch = Batch::new("n");
            batch.push(7, &frames[0].1);
            assert_eq!(batch.bytes().len(), 1 + 1 + 13);
        }
    }
}
