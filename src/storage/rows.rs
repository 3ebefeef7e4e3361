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
