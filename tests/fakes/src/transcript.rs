//! Recorded transcripts: the file format, loading, and turning a recorded
//! response back into the bytes the real server sent.
//!
//! A transcript is a JSON array of `{request: {method, path, headers, body},
//! response: {status, headers, body}, note?}` (the format of the NetBox,
//! Wiki.js and Home Assistant recordings; extra keys such as `timing` are
//! ignored). Response bodies are kept as the raw JSON text of the file, so
//! key order survives (Wiki.js puts `errors` before `data`), and are sent
//! compact, the way Django REST framework, Express and aiohttp serialize:
//! no insignificant whitespace, non-ASCII as UTF-8, numbers exactly as
//! recorded. A string body whose `Content-Type` is not JSON (HTML 404 pages,
//! Home Assistant's `text/plain` answers) is sent as the raw text.

use std::collections::BTreeMap;
use std::path::Path;

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::Error;

/// One recorded request/response pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Exchange {
    /// The request as sent.
    pub request: RecordedRequest,
    /// The answer as received.
    pub response: RecordedResponse,
    /// The recorder's note.
    #[serde(default)]
    pub note: Option<String>,
}

/// A recorded request.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path with query, exactly as sent.
    pub path: String,
    /// Headers that were sent (placeholders instead of credentials).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body, or null.
    #[serde(default)]
    pub body: Value,
}

impl RecordedRequest {
    /// A recorded header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The recorded `Authorization` value, if one was sent.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// A recorded response.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedResponse {
    /// Status.
    pub status: u16,
    /// Headers kept by the recorder.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body as written in the transcript (raw JSON text); `None` when
    /// there was no body (recorded as null).
    #[serde(default)]
    pub body: Option<Box<RawValue>>,
}

impl RecordedResponse {
    /// A recorded header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the recorded `Content-Type` is JSON.
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or(ct).trim();
            ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
        })
    }

    /// The body as the server sent it (see the module docs).
    pub fn body_bytes(&self) -> Result<Bytes, serde_json::Error> {
        let Some(raw) = &self.body else {
            return Ok(Bytes::new());
        };
        if !self.is_json() {
            if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
                return Ok(Bytes::from(text));
            }
        }
        Ok(Bytes::from(compact_json(raw.get())?))
    }

    /// The body parsed as JSON (`Null` when there was none).
    pub fn json(&self) -> Value {
        self.body
            .as_ref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null)
    }
}

/// A named transcript (`netbox/01-auth.json`, or a file path).
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Where it came from, for messages and hit records.
    pub name: String,
    /// The exchanges in recorded order.
    pub exchanges: Vec<Exchange>,
}

impl Transcript {
    /// Parses transcript text.
    pub fn parse(name: &str, text: &str) -> Result<Self, Error> {
        let exchanges = serde_json::from_str(text).map_err(|source| Error::Transcript {
            name: name.to_string(),
            source,
        })?;
        Ok(Self {
            name: name.to_string(),
            exchanges,
        })
    }

    /// Reads and parses a transcript file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadTranscript {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }
}

/// A response ready to send: status, headers and body bytes.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The reply that replays `response`.
    pub fn from_recorded(response: &RecordedResponse) -> Result<Self, String> {
        let status = StatusCode::from_u16(response.status)
            .map_err(|e| format!("status {}: {e}", response.status))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &response.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header name {k:?}: {e}"))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| format!("value of header {k}: {e}"))?;
            headers.append(name, value);
        }
        let body = response
            .body_bytes()
            .map_err(|e| format!("response body: {e}"))?;
        Ok(Self {
            status,
            headers,
            body,
        })
    }
}

/// One exchange with its replayable reply and where it came from.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The exchange.
    pub exchange: Exchange,
    /// `<transcript>#<index>`.
    pub from: String,
    /// The reply to send.
    pub reply: Reply,
}

/// Prepares every exchange of `transcripts` for replay, in order.
pub fn prepare(transcripts: &[Transcript]) -> Result<Vec<Recorded>, Error> {
    let mut out = Vec::new();
    for t in transcripts {
        for (index, exchange) in t.exchanges.iter().enumerate() {
            let reply =
                Reply::from_recorded(&exchange.response).map_err(|reason| Error::BadExchange {
                    name: t.name.clone(),
                    index,
                    reason,
                })?;
            out.push(Recorded {
                exchange: exchange.clone(),
                from: format!("{}#{index}", t.name),
                reply,
            });
        }
    }
    Ok(out)
}

/// Compacts JSON text: drops insignificant whitespace, keeps key order and
/// number tokens as written, and re-encodes every string the way servers do
/// (`\uXXXX` escapes of printable characters become UTF-8).
pub fn compact_json(raw: &str) -> Result<String, serde_json::Error> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            b'"' => {
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        Some(b'\\') => j += 2,
                        Some(b'"') | None => break,
                        Some(_) => j += 1,
                    }
                }
                let end = (j + 1).min(raw.len());
                // Quotes are ASCII, so both ends are char boundaries.
                let token = raw.get(i..end).unwrap_or_default();
                let s: String = serde_json::from_str(token)?;
                out.push_str(&serde_json::to_string(&s)?);
                i = end;
            }
            _ => {
                // Outside strings valid JSON is ASCII.
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    // Validate the result the same way a client would.
    serde_json::from_str::<serde::de::IgnoredAny>(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_order_numbers_and_utf8() {
        let raw = "{ \"z\": [1.50, 2e3 , true, null],\n  \"a\": \"caf\\u00e9 \\\"q\\\" \\n\" }";
        assert_eq!(
            compact_json(raw).unwrap(),
            "{\"z\":[1.50,2e3,true,null],\"a\":\"café \\\"q\\\" \\n\"}"
        );
        assert!(compact_json("{\"a\": }").is_err());
    }

    #[test]
    fn string_bodies_are_raw_unless_json() {
        let t = Transcript::parse(
            "t",
            r#"[{"request":{"method":"GET","path":"/x"},
                 "response":{"status":404,"headers":{"Content-Type":"text/html"},"body":"<p>a b</p>"}},
                {"request":{"method":"GET","path":"/y"},
                 "response":{"status":200,"headers":{"Content-Type":"application/json"},"body":"s"}},
                {"request":{"method":"DELETE","path":"/z"},
                 "response":{"status":204,"headers":{},"body":null}}]"#,
        )
        .unwrap();
        let r = prepare(&[t]).unwrap();
        assert_eq!(&r[0].reply.body[..], b"<p>a b</p>");
        assert_eq!(&r[1].reply.body[..], b"\"s\"");
        assert!(r[2].reply.body.is_empty());
        assert_eq!(r[2].from, "t#2");
    }
}
