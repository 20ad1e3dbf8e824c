//! Just enough MQTT 3.1.1 for a load generator: CONNECT, PUBLISH (QoS 0 and 1), PUBACK,
//! SUBSCRIBE, DISCONNECT, and a parser that splits a byte stream into packets.
//!
//! rumqttc runs one event loop per connection; ten thousand of them cost more than the broker
//! being measured. These are plain byte builders over a `TcpStream`, so that one process holds
//! 10,000 connections for a few MiB.

/// Appends MQTT's variable-length "remaining length".
fn remaining_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A retained QoS 1 last will.
pub struct Will<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
}

/// CONNECT with a clean session.
pub fn connect(client_id: &str, keep_alive_s: u16, will: Option<Will<'_>>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02; // clean session
    if will.is_some() {
        flags |= 0x04 | 0x08 | 0x20; // will, will QoS 1, will retain
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    if let Some(w) = will {
        string(&mut body, w.topic.as_bytes());
        string(&mut body, w.payload);
    }
    let mut out = vec![0x10];
    remaining_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Appends a PUBLISH: QoS 1 with packet id `pkid`, or QoS 0 when `pkid` is 0.
pub fn publish(out: &mut Vec<u8>, topic: &str, pkid: u16, retain: bool, payload: &[u8]) {
    let qos1 = pkid != 0;
    out.push(0x30 | if qos1 { 0x02 } else { 0 } | u8::from(retain));
    let len = 2 + topic.len() + if qos1 { 2 } else { 0 } + payload.len();
    remaining_length(out, len);
    string(out, topic.as_bytes());
    if qos1 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// SUBSCRIBE to one filter.
pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut out = vec![0x82];
    remaining_length(&mut out, 2 + 2 + filter.len() + 1);
    out.extend_from_slice(&pkid.to_be_bytes());
    string(&mut out, filter.as_bytes());
    out.push(qos);
    out
}

/// DISCONNECT.
pub const DISCONNECT: [u8; 2] = [0xe0, 0];

/// One packet found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: type and flags.
    pub header: u8,
    /// Where the body starts.
    pub body: usize,
    /// The whole packet's length.
    pub len: usize,
}

impl Frame {
    /// The packet type (`3` PUBLISH, `4` PUBACK, `2` CONNACK, `9` SUBACK…).
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
}

/// The packet at the start of `buf`: `Ok(None)` if incomplete, `Err` if the length is malformed.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, ()> {
    let Some(&header) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..5 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            let total = i + 1 + len;
            return Ok((buf.len() >= total).then_some(Frame {
                header,
                body: i + 1,
                len: total,
            }));
        }
    }
    Err(())
}

/// A PUBLISH's topic, packet id (0 for QoS 0) and payload.
pub fn parse_publish<'a>(buf: &'a [u8], f: &Frame) -> Option<(&'a [u8], u16, &'a [u8])> {
    let body = buf.get(f.body..f.len)?;
    let tlen = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let topic = body.get(2..2 + tlen)?;
    let mut at = 2 + tlen;
    let qos = (f.header >> 1) & 3;
    let pkid = if qos > 0 {
        let p = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
        p
    } else {
        0
    };
    Some((topic, pkid, body.get(at..)?))
}

/// The packet id of a PUBACK (or SUBACK) frame.
pub fn packet_id(buf: &[u8], f: &Frame) -> Option<u16> {
    Some(u16::from_be_bytes([
        *buf.get(f.body)?,
        *buf.get(f.body + 1)?,
    ]))
}
