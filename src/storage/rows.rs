//! How the three records written for every message (message, delivery, attempt) are stored:
//! without the fields their table key already holds.
//!
//! A message's key is (app id, message id), a delivery's (message id, n), an attempt's (message
//! id, attempt id). Version 1 of these records repeated those ids in the value, 19 bytes each
//! as postcard varints; version 2 leaves them out and `decode_keyed` puts them back from the
//! key, and the two ids a delivery or attempt still carries (app, endpoint) are written as 16
//! fixed bytes. That is about 135 bytes less per delivered message, a fifth of what a message
//! costs on disk (issue 4's space report, `herald check`). Version 1 values still decode: they
//! are the model's own serde shape, so that shape must not change without a version 3 here.
//!
//! Owns: the row shapes and the key each record goes with. Must never: be used outside
//! `storage/`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::codec::CodecError;
use crate::model::*;

/// A record whose table key carries some of its fields.
pub trait KeyedRecord: Sized {
    /// The table key, as redb hands it back.
    type Key;
    /// The key under which this record is stored.
    fn key(&self) -> Self::Key;
    /// Appends the row (without the key's fields) to `out`.
    fn write_row(&self, out: Vec<u8>) -> Vec<u8>;
    /// Reads a version 2 row stored under `key`.
    fn read_row(key: Self::Key, row: &[u8]) -> Result<Self, CodecError>;
}

const ROW_VERSION: u8 = 2;
/// The version before rows left out their key's fields: the whole record, postcard.
const WHOLE_VERSION: u8 = 1;

pub fn encode_keyed<T: KeyedRecord>(value: &T) -> Vec<u8> {
    value.write_row(vec![ROW_VERSION])
}

pub fn decode_keyed<T: KeyedRecord + serde::de::DeserializeOwned>(
    key: T::Key,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        ROW_VERSION => T::read_row(key, rest),
        WHOLE_VERSION => Ok(postcard::from_bytes(rest)?),
        found => Err(CodecError::UnknownVersion {
            found,
            known: ROW_VERSION,
        }),
    }
}

fn put<T: Serialize>(row: &T, out: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(row, out).expect("encoding into a Vec cannot fail")
}

/// An id written as its 16 big-endian bytes: a ULID as a postcard varint takes 19.
pub(super) mod fixed_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u128, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&id.to_be_bytes(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        <[u8; 16]>::deserialize(d).map(u128::from_be_bytes)
    }
}

#[derive(Serialize, Deserialize)]
struct MessageRow<'a> {
    event_type: Cow<'a, str>,
    event_id: Option<Cow<'a, str>>,
    channels: Option<Cow<'a, [String]>>,
    payload: Option<Cow<'a, str>>,
    created_at: Micros,
    retention_days: u16,
}

impl KeyedRecord for Message {
    type Key = (u128, u128);

    fn key(&self) -> (u128, u128) {
        (self.app_id.0, self.id.0)
    }

    fn write_row(&self, out: Vec<u8>) -> Vec<u8> {
        let row = MessageRow {
            event_type: Cow::Borrowed(&self.event_type),
            event_id: self.event_id.as_deref().map(Cow::Borrowed),
            channels: self.channels.as_deref().map(Cow::Borrowed),
            payload: self.payload.as_deref().map(Cow::Borrowed),
            created_at: self.created_at,
            retention_days: self.retention_days,
        };
        put(&row, out)
    }

    fn read_row((app, id): (u128, u128), row: &[u8]) -> Result<Message, CodecError> {
        let row: MessageRow = postcard::from_bytes(row)?;
        Ok(Message {
            id: MessageId(id),
            app_id: AppId(app),
            event_type: row.event_type.into_owned(),
            event_id: row.event_id.map(Cow::into_owned),
            channels: row.channels.map(Cow::into_owned),
            payload: row.payload.map(Cow::into_owned),
            created_at: row.created_at,
            retention_days: row.retention_days,
        })
    }
}

/// A message without its payload: what a scan over many messages needs (event type and
/// channels for routing, whether the payload is still kept), read without copying the payload.
#[derive(Clone, Debug)]
pub struct MessageHead {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: String,
    pub channels: Option<Vec<String>>,
    pub has_payload: bool,
}

/// The leading fields of a version 2 message row, borrowed from the stored bytes.
#[derive(Deserialize)]
struct MessageRowHead<'a> {
    #[serde(borrow)]
    event_type: &'a str,
    #[serde(borrow)]
    _event_id: Option<&'a str>,
    #[serde(borrow)]
    channels: Option<Vec<&'a str>>,
    #[serde(borrow)]
    payload: Option<&'a str>,
}

/// Reads a message row's head without copying its payload.
pub fn decode_message_head(
    (app, id): (u128, u128),
    bytes: &[u8],
) -> Result<MessageHead, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != ROW_VERSION {
        let m: Message = decode_keyed((app, id), bytes)?;
        return Ok(MessageHead {
            id: m.id,
            app_id: m.app_id,
            event_type: m.event_type,
            channels: m.channels,
            has_payload: m.payload.is_some(),
        });
    }
    let (head, _): (MessageRowHead, _) = postcard::take_from_bytes(rest)?;
    Ok(MessageHead {
        id: MessageId(id),
        app_id: AppId(app),
        event_type: head.event_type.to_string(),
        channels: head
            .channels
            .map(|cs| cs.into_iter().map(str::to_string).collect()),
        has_payload: head.payload.is_some(),
    })
}

/// Which delivery an attempt row belongs to and where it went, read from the row's first
/// fields (n, app, endpoint) without decoding the stored response.
pub fn decode_attempt_head(
    (msg, id): (u128, u128),
    bytes: &[u8],
) -> Result<(DeliveryId, EndpointId), CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != ROW_VERSION {
        let a: Attempt = decode_keyed((msg, id), bytes)?;
        return Ok((a.delivery_id, a.endpoint_id));
    }
    let ((n, _app, endpoint), _): ((u16, [u8; 16], [u8; 16]), _) = postcard::take_from_bytes(rest)?;
    Ok((
        DeliveryId {
            msg: MessageId(msg),
            n,
        },
        EndpointId(u128::from_be_bytes(endpoint)),
    ))
}

#[derive(Serialize, Deserialize)]
struct DeliveryRow<'a> {
    #[serde(with = "fixed_id")]
    app_id: u128,
    #[serde(with = "fixed_id")]
    endpoint_id: u128,
    priority: Priority,
    state: DeliveryState,
    attempts: u32,
    due_ms: Option<Millis>,
    trigger_type: TriggerType,
    trigger_id: Option<TriggerId>,
    unique_key: Option<Cow<'a, str>>,
    slot_reserved: bool,
    created_at: Micros,
    updated_at: Micros,
}

impl KeyedRecord for Delivery {
    type Key = (u128, u16);

    fn key(&self) -> (u128, u16) {
        (self.id.msg.0, self.id.n)
    }

    fn write_row(&self, out: Vec<u8>) -> Vec<u8> {
        let row = DeliveryRow {
            app_id: self.app_id.0,
            endpoint_id: self.endpoint_id.0,
            priority: self.priority,
            state: self.state,
            attempts: self.attempts,
            due_ms: self.due_ms,
            trigger_type: self.trigger_type,
            trigger_id: self.trigger_id,
            unique_key: self.unique_key.as_deref().map(Cow::Borrowed),
            slot_reserved: self.slot_reserved,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        put(&row, out)
    }

    fn read_row((msg, n): (u128, u16), row: &[u8]) -> Result<Delivery, CodecError> {
        let row: DeliveryRow = postcard::from_bytes(row)?;
        Ok(Delivery {
            id: DeliveryId {
                msg: MessageId(msg),
                n,
            },
            msg_id: MessageId(msg),
            app_id: AppId(row.app_id),
            endpoint_id: EndpointId(row.endpoint_id),
            priority: row.priority,
            state: row.state,
            attempts: row.attempts,
            due_ms: row.due_ms,
            trigger_type: row.trigger_type,
            trigger_id: row.trigger_id,
            unique_key: row.unique_key.map(Cow::into_owned),
            slot_reserved: row.slot_reserved,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct AttemptRow<'a> {
    /// The delivery's n; its message is the key's.
    n: u16,
    #[serde(with = "fixed_id")]
    app_id: u128,
    #[serde(with = "fixed_id")]
    endpoint_id: u128,
    url: Cow<'a, str>,
    status_code: u16,
    duration_ms: u64,
    error: Option<AttemptError>,
    response: Cow<'a, str>,
    trigger_type: TriggerType,
    created_at: Micros,
}

impl KeyedRecord for Attempt {
    type Key = (u128, u128);

    fn key(&self) -> (u128, u128) {
        (self.msg_id.0, self.id.0)
    }

    fn write_row(&self, out: Vec<u8>) -> Vec<u8> {
        debug_assert_eq!(self.delivery_id.msg, self.msg_id);
        let row = AttemptRow {
            n: self.delivery_id.n,
            app_id: self.app_id.0,
            endpoint_id: self.endpoint_id.0,
            url: Cow::Borrowed(&self.url),
            status_code: self.status_code,
            duration_ms: self.duration_ms,
            error: self.error,
            response: Cow::Borrowed(&self.response),
            trigger_type: self.trigger_type,
            created_at: self.created_at,
        };
        put(&row, out)
    }

    fn read_row((msg, id): (u128, u128), row: &[u8]) -> Result<Attempt, CodecError> {
        let row: AttemptRow = postcard::from_bytes(row)?;
        Ok(Attempt {
            id: AttemptId(id),
            delivery_id: DeliveryId {
                msg: MessageId(msg),
                n: row.n,
            },
            msg_id: MessageId(msg),
            app_id: AppId(row.app_id),
            endpoint_id: EndpointId(row.endpoint_id),
            url: row.url.into_owned(),
            status_code: row.status_code,
            duration_ms: row.duration_ms,
            error: row.error,
            response: row.response.into_owned(),
            trigger_type: row.trigger_type,
            created_at: row.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> u128 {
        id_floor_at_millis(1_790_000_000_000) | n
    }

    /// The heads read what the whole record holds, from version 2 rows and version 1 records.
    #[test]
    fn heads_agree_with_the_whole_records() {
        for payload in [Some(r#"{"x":1}"#.to_string()), None] {
            let m = Message {
                id: MessageId(id(3)),
                app_id: AppId(id(1)),
                event_type: "a.b".into(),
                event_id: Some("evt-1".into()),
                channels: Some(vec!["eu".into(), "us".into()]),
                payload,
                created_at: 7,
                retention_days: 90,
            };
            let whole = postcard::to_extend(&m, vec![WHOLE_VERSION]).unwrap();
            for bytes in [encode_keyed(&m), whole] {
                let head = decode_message_head(m.key(), &bytes).unwrap();
                assert_eq!((head.id, head.app_id), (m.id, m.app_id));
                assert_eq!(head.event_type, m.event_type);
                assert_eq!(head.channels, m.channels);
                assert_eq!(head.has_payload, m.payload.is_some());
            }
        }
        let a = Attempt {
            id: AttemptId(id(4)),
            delivery_id: DeliveryId {
                msg: MessageId(id(3)),
                n: 300,
            },
            msg_id: MessageId(id(3)),
            app_id: AppId(id(1)),
            endpoint_id: EndpointId(id(2)),
            url: "https://example.com".into(),
            status_code: 503,
            duration_ms: 12,
            error: Some(AttemptError::Status),
            response: "busy".repeat(1000),
            trigger_type: TriggerType::Scheduled,
            created_at: 8,
        };
        let whole = postcard::to_extend(&a, vec![WHOLE_VERSION]).unwrap();
        for bytes in [encode_keyed(&a), whole] {
            assert_eq!(
                decode_attempt_head(a.key(), &bytes).unwrap(),
                (a.delivery_id, a.endpoint_id)
            );
        }
    }
}
