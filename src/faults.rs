//! Test-only fault hooks for the delivery engine (feature `fault-injection`): make an
//! attempt to one endpoint panic, its record fail, or its deliveries unreadable, so the
//! engine's handling of faults that a real disk or a real bug would cause can be tested.
//!
//! Owns: the registry of injected faults, keyed by endpoint so tests running side by side in
//! one process do not see each other's. Must never: be compiled into a release build (the
//! module exists only with the feature), or be consulted outside `delivery/`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::EndpointId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The attempt panics before it sends anything.
    PanicInAttempt,
    /// The attempt is sent, but recording it fails (as on a full disk).
    RecordFails,
    /// The delivery's records do not load (as if corrupt).
    Unreadable,
}

/// Faults armed per endpoint, with how many times each is still to fire (`u32::MAX`: until
/// cleared).
static ARMED: Mutex<Option<HashMap<(EndpointId, Fault), u32>>> = Mutex::new(None);

/// Arms `fault` for `endpoint`, to fire `times` times.
pub fn inject(endpoint: EndpointId, fault: Fault, times: u32) {
    ARMED
        .lock()
        .expect("not poisoned")
        .get_or_insert_default()
        .insert((endpoint, fault), times);
}

/// Disarms every fault of `endpoint`.
pub fn clear(endpoint: EndpointId) {
    if let Some(armed) = ARMED.lock().expect("not poisoned").as_mut() {
        armed.retain(|(ep, _), _| *ep != endpoint);
    }
}

/// Whether `fault` fires now for `endpoint` (counting it down).
pub(crate) fn fires(endpoint: EndpointId, fault: Fault) -> bool {
    let mut armed = ARMED.lock().expect("not poisoned");
    let Some(left) = armed.as_mut().and_then(|a| a.get_mut(&(endpoint, fault))) else {
        return false;
    };
    if *left == 0 {
        return false;
    }
    if *left != u32::MAX {
        *left -= 1;
    }
    true
}
