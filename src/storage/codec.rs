//! The byte encoding of stored records: one version byte, then postcard.
//!
//! postcard is a stable, documented wire format. The leading version byte lets a record type
//! change shape later: `decode` sees the old version and upgrades it in place. Owns: that
//! encoding and the rule that `decode(encode(x)) == x`. Must never: be used outside `storage/`.

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record version {found} is unknown to this build (it knows up to {known})")]
    UnknownVersion { found: u8, known: u8 },
    #[error("record does not decode: {0}")]
    Postcard(#[from] postcard::Error),
}

/// A type stored as a value. `VERSION` is written before the postcard bytes; bump it when the
/// shape changes and teach `upgrade` to read the older version.
pub trait Record: Serialize + DeserializeOwned {
    const VERSION: u8 = 1;

    /// Reads a record written with an older `version` (`IdempotentResponse` has one).
    fn upgrade(version: u8, _bytes: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::UnknownVersion {
            found: version,
            known: Self::VERSION,
        })
    }
}

pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let out = vec![T::VERSION];
    postcard::to_extend(value, out).expect("encoding into a Vec cannot fail")
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        Ok(postcard::from_bytes(rest)?)
    } else {
        T::upgrade(version, rest)
    }
}

use crate::model::{Alert, App, BackgroundTask, Endpoint, EventType, Token, Trigger};

// Messages, deliveries and attempts are stored without their key's fields: `rows.rs`.
impl Record for App {}
impl Record for EventType {}
impl Record for Endpoint {}
impl Record for Alert {}
impl Record for Token {}
impl Record for Trigger {}
impl Record for BackgroundTask {}

// The dashboard's records.
impl Record for crate::model::User {}
impl Record for crate::model::Session {}
impl Record for crate::model::PortalLink {}
impl Record for crate::model::SetupToken {}

/// The first 2xx answer to a request that carried an Idempotency-Key, kept until `expires_ms`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IdempotentResponse {
    pub expires_ms: u64,
    pub answer: RememberedAnswer,
}

/// What a key was answered with.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RememberedAnswer {
    /// The status and body as sent.
    Sent { status: u16, body: Vec<u8> },
    /// A message create's answer (202 and the message's JSON), kept by reference and rendered
    /// again from the message when replayed: the Svix SDKs put a key on every create, and the
    /// whole answer (the payload and more, under a random key) cost ~300 B of pages per
    /// message; the reference costs ~110 B. A replay shows the message as it is now: after its
    /// content is expunged, without it (a copy of the payload is not kept for the key).
    Message {
        #[serde(with = "super::rows::fixed_id")]
        app: u128,
        #[serde(with = "super::rows::fixed_id")]
        msg: u128,
        with_content: bool,
    },
}

/// Version 1 kept every answer whole (layout 1 and 2 files).
#[derive(serde::Deserialize)]
struct IdempotentResponseV1 {
    expires_ms: u64,
    status: u16,
    body: Vec<u8>,
}

impl Record for IdempotentResponse {
    const VERSION: u8 = 2;

    fn upgrade(version: u8, bytes: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => {
                let v1: IdempotentResponseV1 = postcard::from_bytes(bytes)?;
                Ok(IdempotentResponse {
                    expires_ms: v1.expires_ms,
                    answer: RememberedAnswer::Sent {
                        status: v1.status,
                        body: v1.body,
                    },
                })
            }
            found => Err(CodecError::UnknownVersion {
                found,
                known: Self::VERSION,
            }),
        }
    }
}

/// Decodes `bytes` as every stored record type; answers how many accepted them. For fuzzing:
/// a stored value, however damaged, must decode or be an error, never panic.
#[doc(hidden)]
pub fn decode_any_record(bytes: &[u8]) -> usize {
    use super::rows::decode_keyed;
    use crate::model::*;
    [
        decode::<App>(bytes).is_ok(),
        decode::<EventType>(bytes).is_ok(),
        decode::<Endpoint>(bytes).is_ok(),
        decode::<Trigger>(bytes).is_ok(),
        decode_keyed::<Message>((1, 2), bytes).is_ok(),
        decode_keyed::<Delivery>((2, 0), bytes).is_ok(),
        decode_keyed::<Attempt>((2, 3), bytes).is_ok(),
        decode::<Alert>(bytes).is_ok(),
        decode::<BackgroundTask>(bytes).is_ok(),
        decode::<Token>(bytes).is_ok(),
        decode::<IdempotentResponse>(bytes).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::*;
    use crate::storage::rows::{KeyedRecord, decode_keyed, encode_keyed};

    fn round_trip<T: Record + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode(&value);
        assert_eq!(bytes[0], T::VERSION);
        assert_eq!(decode::<T>(&bytes).unwrap(), value);
    }

    /// A record stored without its key's fields decodes whole from (key, row), the row is
    /// smaller than the whole record, and the whole record as version 1 wrote it still decodes.
    fn keyed_round_trip<T>(value: T)
    where
        T: KeyedRecord + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let row = encode_keyed(&value);
        assert_eq!(row[0], 2);
        assert_eq!(decode_keyed::<T>(value.key(), &row).unwrap(), value);
        let whole = postcard::to_extend(&value, vec![1]).unwrap();
        assert!(row.len() < whole.len(), "{} >= {}", row.len(), whole.len());
        assert_eq!(decode_keyed::<T>(value.key(), &whole).unwrap(), value);
    }

    /// An id as big as a real one (a ULID made in 2026), so the rows are sized as stored.
    fn real_id(n: u128) -> u128 {
        id_floor_at_millis(1_790_000_000_000) | n
    }

    fn metadata() -> BTreeMap<String, String> {
        BTreeMap::from([("tier".to_string(), "gold".to_string())])
    }

    #[test]
    fn every_record_round_trips() {
        round_trip(App {
            id: AppId(1),
            uid: Some("shop-1".into()),
            name: "Shop".into(),
            throttle_rate: Some(10),
            metadata: metadata(),
            created_at: 5,
            updated_at: 6,
        });
        round_trip(EventType {
            name: "order.created".into(),
            description: "d".into(),
            archived: false,
            deprecated: true,
            schemas_json: Some(r#"{"1":{"type":"object"}}"#.into()),
            group_name: Some("order".into()),
            feature_flags: None,
            example_json: Some(r#"{"id":1}"#.into()),
            created_at: 1,
            updated_at: 2,
        });
        round_trip(Endpoint {
            id: EndpointId(2),
            app_id: AppId(1),
            uid: None,
            url: "https://example.com/hook".into(),
            description: String::new(),
            event_types: Some(vec!["a.b".into()]),
            channels: None,
            keys: vec![SigningKey {
                key: vec![1; 24],
                expires_at: Some(9),
            }],
            disabled: false,
            throttle_rate: None,
            metadata: metadata(),
            headers: metadata(),
            options: EndpointOptions {
                basic_auth: Some(BasicAuth {
                    username: "u".into(),
                    password: "p".into(),
                }),
                client_cert: Some(ClientCert {
                    cert_pem: "c".into(),
                    key_pem: "k".into(),
                }),
                timeout_ms: Some(5),
                retry_schedule_ms: Some(vec![1, 2]),
                attempts_max: Some(10),
                concurrency_max: Some(2),
                verification: Some(Verification {
                    code: "x".into(),
                    verified_at: None,
                }),
                subscription_disabled: true,
                disabled_reason: Some("gone".into()),
                failing_since: Some(8),
            },
            created_at: 3,
            updated_at: 4,
        });
        keyed_round_trip(Message {
            id: MessageId(real_id(3)),
            app_id: AppId(real_id(1)),
            event_type: "a.b".into(),
            event_id: Some("evt-1".into()),
            channels: Some(vec!["eu".into()]),
            payload: Some(r#"{"x":1}"#.into()),
            created_at: 7,
            retention_days: 90,
        });
        keyed_round_trip(Delivery {
            id: DeliveryId {
                msg: MessageId(real_id(3)),
                n: 0,
            },
            msg_id: MessageId(real_id(3)),
            app_id: AppId(real_id(1)),
            endpoint_id: EndpointId(real_id(2)),
            priority: Priority::Low,
            state: DeliveryState::Pending,
            attempts: 2,
            due_ms: Some(77),
            trigger_type: TriggerType::Manual,
            trigger_id: None,
            unique_key: None,
            slot_reserved: false,
            created_at: 1,
            updated_at: 2,
        });
        keyed_round_trip(Attempt {
            id: AttemptId(real_id(4)),
            delivery_id: DeliveryId {
                msg: MessageId(real_id(3)),
                n: 1,
            },
            msg_id: MessageId(real_id(3)),
            app_id: AppId(real_id(1)),
            endpoint_id: EndpointId(real_id(2)),
            url: "https://example.com".into(),
            status_code: 503,
            duration_ms: 12,
            error: Some(AttemptError::Status),
            response: "busy".into(),
            trigger_type: TriggerType::Scheduled,
            created_at: 8,
        });
        round_trip(Alert {
            id: AlertId(5),
            kind: AlertKind::AttemptsExhausted,
            app_id: AppId(1),
            endpoint_id: EndpointId(2),
            msg_id: Some(MessageId(3)),
            detail: "8 attempts failed".into(),
            created_at: 1,
            acknowledged_at: None,
        });
        round_trip(BackgroundTask {
            id: TaskId(real_id(7)),
            app_id: AppId(real_id(1)),
            endpoint_id: EndpointId(real_id(2)),
            kind: TaskKind::Replay,
            status: TaskStatus::Failed,
            lo: real_id(3),
            hi: real_id(9),
            cursor: real_id(5),
            deliveries: 200,
            failure: Some("the endpoint was deleted".into()),
            created_at: 1,
            updated_at: 2,
        });
        round_trip(Token {
            id: TokenId(6),
            name: "ci".into(),
            app_id: None,
            created_at: 1,
        });
        round_trip(IdempotentResponse {
            expires_ms: 1,
            answer: RememberedAnswer::Sent {
                status: 202,
                body: b"{}".to_vec(),
            },
        });
        round_trip(IdempotentResponse {
            expires_ms: 1,
            answer: RememberedAnswer::Message {
                app: 2,
                msg: 3,
                with_content: false,
            },
        });
    }

    /// Version 1 answers (layouts 1 and 2) read as answers sent; a message create remembered
    /// now is a reference, far smaller than the answer it stands for.
    #[test]
    fn remembered_answers_upgrade_and_a_message_create_is_kept_small() {
        let v1 =
            postcard::to_extend(&(1_790_000_000_000u64, 202u16, b"{}".to_vec()), vec![1]).unwrap();
        assert_eq!(
            decode::<IdempotentResponse>(&v1).unwrap(),
            IdempotentResponse {
                expires_ms: 1_790_000_000_000,
                answer: RememberedAnswer::Sent {
                    status: 202,
                    body: b"{}".to_vec()
                },
            }
        );
        let reference = encode(&IdempotentResponse {
            expires_ms: 1_790_000_000_000,
            answer: RememberedAnswer::Message {
                app: real_id(1),
                msg: real_id(2),
                with_content: true,
            },
        });
        assert!(reference.len() <= 42, "{} bytes", reference.len());
    }

    #[test]
    fn dashboard_records_round_trip() {
        round_trip(User {
            username: "ops".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_at: 1,
            updated_at: 2,
        });
        round_trip(Session {
            owner: SessionOwner::User("ops".into()),
            csrf: "csrf-token".into(),
            created_at: 3,
            expires_at: 4,
        });
        round_trip(Session {
            owner: SessionOwner::Portal {
                app_id: AppId(7),
                read_only: true,
            },
            csrf: "t".into(),
            created_at: 5,
            expires_at: 6,
        });
        round_trip(PortalLink {
            app_id: AppId(7),
            read_only: false,
            created_at: 1,
            expires_at: 9,
        });
        round_trip(SetupToken {
            created_at: 1,
            expires_at: 2,
        });
    }

    /// How a record type changes shape: bump `VERSION`, keep the old shape, upgrade from it.
    #[test]
    fn an_older_version_is_upgraded_on_read() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct NoteV1 {
            text: String,
        }
        impl Record for NoteV1 {}
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Note {
            text: String,
            pinned: bool,
        }
        impl Record for Note {
            const VERSION: u8 = 2;
            fn upgrade(version: u8, bytes: &[u8]) -> Result<Self, CodecError> {
                match version {
                    1 => {
                        let old: NoteV1 = postcard::from_bytes(bytes)?;
                        Ok(Note {
                            text: old.text,
                            pinned: false,
                        })
                    }
                    v => Err(CodecError::UnknownVersion {
                        found: v,
                        known: Self::VERSION,
                    }),
                }
            }
        }
        let old = encode(&NoteV1 { text: "hi".into() });
        assert_eq!(
            decode::<Note>(&old).unwrap(),
            Note {
                text: "hi".into(),
                pinned: false
            }
        );
        round_trip(Note {
            text: "new".into(),
            pinned: true,
        });
    }

    #[test]
    fn an_unknown_version_is_an_error_not_garbage() {
        let mut bytes = encode(&Token {
            id: TokenId(6),
            name: "x".into(),
            app_id: None,
            created_at: 1,
        });
        bytes[0] = 99;
        assert!(matches!(
            decode::<Token>(&bytes),
            Err(CodecError::UnknownVersion { found: 99, .. })
        ));
        assert!(matches!(decode::<Token>(&[]), Err(CodecError::Empty)));
    }
}
