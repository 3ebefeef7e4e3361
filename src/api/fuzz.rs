//! Entry points for fuzzing the request decoders (used by `fuzz/` and by a bounded test):
//! every JSON body the API accepts is parsed from the same bytes, and must answer a value or
//! a Svix-shaped error, never panic. Hidden from the documentation; not part of the API.

use super::extract::parse_json;

/// Parses `bytes` as every request body the API decodes; answers how many were accepted.
pub fn decode_request_bodies(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    macro_rules! each {
        ($($t:ty),* $(,)?) => {$(
            if parse_json::<$t>(bytes).is_ok() {
                accepted += 1;
            }
        )*};
    }
    each!(
        super::apps::ApplicationIn,
        super::apps::ApplicationPatch,
        super::event_types::EventTypeIn,
        super::event_types::EventTypeUpsertIn,
        super::event_types::EventTypePatch,
        super::endpoints::EndpointIn,
        super::endpoints::EndpointUpdate,
        super::endpoints::EndpointPatchIn,
        super::endpoints::SecretRotateIn,
        super::endpoints::HeadersIn,
        super::endpoints::HeadersPatchIn,
        super::endpoints::EventExampleIn,
        super::endpoints::RecoverIn,
        super::endpoints::VerifyIn,
        super::endpoints::EndpointTestIn,
        super::messages::MessageIn,
        super::triggers::TriggerIn,
        super::triggers::TriggerPreviewIn,
    );
    accepted
}
