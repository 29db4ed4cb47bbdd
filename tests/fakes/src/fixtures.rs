//! The recorded transcripts compiled into the fakes (copies of the shared
//! recordings in `tests/fakes/fixtures/`, see the README there).

use crate::transcript::Transcript;
use crate::Error;

macro_rules! fixture {
    ($path:literal) => {
        ($path, include_str!(concat!("../fixtures/", $path)))
    };
}

/// NetBox 4.6.8: `GET /api/status/` with every kind of valid and invalid token.
pub const NETBOX: &[(&str, &str)] = &[fixture!("netbox/01-auth.json")];

/// Wiki.js 2.5.314: `/healthz`, the admin health query and Guest fallbacks,
/// and a revoked key.
pub const WIKIJS: &[(&str, &str)] = &[
    fixture!("wikijs/00-health.json"),
    fixture!("wikijs/01-auth.json"),
    fixture!("wikijs/01b-auth-revoked-key.json"),
];

/// Home Assistant Core 2025.4.4, REST API only (no WebSocket).
pub const HOME_ASSISTANT: &[(&str, &str)] = &[
    fixture!("homeassistant/rest_api_root_auth.json"),
    fixture!("homeassistant/rest_config.json"),
    fixture!("homeassistant/rest_states.json"),
    fixture!("homeassistant/rest_state_entity.json"),
    fixture!("homeassistant/rest_state_missing_404.json"),
    fixture!("homeassistant/rest_template_device_area.json"),
    fixture!("homeassistant/rest_template_errors_and_unknown.json"),
];

/// Parses a set of embedded transcripts.
pub fn parse(set: &[(&str, &str)]) -> Result<Vec<Transcript>, Error> {
    set.iter()
        .map(|(name, text)| Transcript::parse(name, text))
        .collect()
}

/// A fake's exchanges, ready to look up: the embedded `set`, then `extra`.
pub(crate) fn recorded(
    set: &[(&str, &str)],
    extra: Vec<Transcript>,
) -> Result<Vec<crate::transcript::Recorded>, Error> {
    let mut transcripts = parse(set)?;
    transcripts.extend(extra);
    crate::transcript::prepare(&transcripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_transcript_prepares() {
        for set in [NETBOX, WIKIJS, HOME_ASSISTANT] {
            let ts = parse(set).unwrap();
            crate::transcript::prepare(&ts).unwrap();
        }
    }
}
