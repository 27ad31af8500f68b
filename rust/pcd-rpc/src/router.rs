//! Which methods exist, and the request headers that are the transport's rather than the host's.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use http::HeaderMap;
use tonic::Status;

/// The streaming shape of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One request, one answer.
    Unary = 0,
    /// One request, a stream of answers.
    ServerStreaming = 1,
    /// A stream of requests, one answer.
    ClientStreaming = 2,
    /// Streams both ways.
    Bidi = 3,
}

impl Kind {
    /// The kind from its number: bit 0 set when the server streams, bit 1 when the client does.
    pub fn from_u8(n: u8) -> Option<Kind> {
        match n {
            0 => Some(Kind::Unary),
            1 => Some(Kind::ServerStreaming),
            2 => Some(Kind::ClientStreaming),
            3 => Some(Kind::Bidi),
            _ => None,
        }
    }

    /// Whether the client sends a stream of requests.
    pub fn client_streams(self) -> bool {
        matches!(self, Kind::ClientStreaming | Kind::Bidi)
    }
}

/// The method table: `/package.Service/Method` paths, each with its index and kind.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    services: HashSet<String>,
    methods: HashMap<String, (u32, Kind)>,
}

impl Routes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a method by its full path (`/package.Service/Method`); its index is the number of
    /// methods added before it. Returns the index, or `None` when the path is malformed or
    /// already present.
    pub fn add(&mut self, path: &str, kind: Kind) -> Option<u32> {
        let (service, _) = split_path(path)?;
        if self.methods.contains_key(path) {
            return None;
        }
        let index = u32::try_from(self.methods.len()).ok()?;
        self.services.insert(service.to_owned());
        self.methods.insert(path.to_owned(), (index, kind));
        Some(index)
    }

    /// Declares a service known even if none of its methods is added: calls to it answer
    /// "unknown method", not "unknown service".
    pub fn add_service(&mut self, service: &str) {
        self.services.insert(service.to_owned());
    }

    /// The method at `path`, or the UNIMPLEMENTED status grpc-go answers with.
    pub fn resolve(&self, path: &str) -> Result<(u32, Kind), Status> {
        if let Some(&found) = self.methods.get(path) {
            return Ok(found);
        }
        let Some((service, method)) = split_path(path) else {
            return Err(Status::unimplemented(format!(
                "malformed method name: {path:?}"
            )));
        };
        if self.services.contains(service) {
            Err(Status::unimplemented(format!(
                "unknown method {method} for service {service}"
            )))
        } else {
            Err(Status::unimplemented(format!("unknown service {service}")))
        }
    }

    /// How many methods the table has.
    pub fn len(&self) -> usize {
        self.methods.len()
    }

    /// Whether the table has no method.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }
}

/// `/pkg.Service/Method` as (`pkg.Service`, `Method`), both non-empty.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H M S m u n`).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match value.as_bytes()[value.len() - 1] {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The request's deadline as a timeout: `Ok(None)` without one, INTERNAL when malformed (as
/// grpc-go answers).
pub(crate) fn request_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_timeout)
        .map(Some)
        .ok_or_else(|| Status::internal(format!("malformed grpc-timeout: {value:?}")))
}

/// The host-visible metadata: every header but the transport's own, values as UTF-8 (lossy).
pub(crate) fn host_metadata(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !(name == "content-type" || name == "te" || name.starts_with("grpc-"))
        })
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// tonic reports an oversized request message as OUT_OF_RANGE; gRPC (grpc-go, grpc core) as
/// RESOURCE_EXHAUSTED, which clients expect. Other statuses pass through.
pub(crate) fn request_error(status: Status) -> Status {
    if status.code() != tonic::Code::OutOfRange {
        return status;
    }
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    match numbers.as_slice() {
        [found, limit] => Status::resource_exhausted(format!(
            "grpc: received message larger than max ({found} vs. {limit})"
        )),
        _ => Status::resource_exhausted(status.message().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn resolves_known_methods_and_names_the_unknown_as_grpc_go_does() {
        let mut routes = Routes::new();
        assert_eq!(
            routes.add(
                "/containerd.services.version.v1.Version/Version",
                Kind::Unary
            ),
            Some(0)
        );
        assert_eq!(routes.add("/x.Y/Stream", Kind::Bidi), Some(1));
        assert_eq!(routes.add("/x.Y/Stream", Kind::Bidi), None);
        assert_eq!(routes.add("no-slash", Kind::Unary), None);
        routes.add_service("x.Empty");

        assert_eq!(
            routes
                .resolve("/containerd.services.version.v1.Version/Version")
                .unwrap(),
            (0, Kind::Unary)
        );
        assert_eq!(routes.resolve("/x.Y/Stream").unwrap(), (1, Kind::Bidi));

        let err = routes.resolve("/x.Y/Nope").unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert_eq!(err.message(), "unknown method Nope for service x.Y");
        let err = routes.resolve("/x.Empty/Any").unwrap_err();
        assert_eq!(err.message(), "unknown method Any for service x.Empty");
        let err = routes.resolve("/a.B/C").unwrap_err();
        assert_eq!(err.message(), "unknown service a.B");
        let err = routes.resolve("/justone").unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().starts_with("malformed method name"));
    }

    #[test]
    fn timeouts_parse_as_the_grpc_spec_says() {
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_timeout("99999999m"),
            Some(Duration::from_millis(99_999_999))
        );
        assert_eq!(parse_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "1s", "-1S", "1.5S", "١S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn transport_headers_are_not_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/grpc".parse().unwrap());
        headers.insert("te", "trailers".parse().unwrap());
        headers.insert("grpc-timeout", "1S".parse().unwrap());
        headers.insert("grpc-accept-encoding", "gzip".parse().unwrap());
        headers.insert("containerd-namespace", "default".parse().unwrap());
        headers.insert("user-agent", "grpc-go/1.51".parse().unwrap());
        headers.insert("trace-bin", "AAEC".parse().unwrap());
        let mut md = host_metadata(&headers);
        md.sort();
        assert_eq!(
            md,
            vec![
                ("containerd-namespace".into(), "default".into()),
                ("trace-bin".into(), "AAEC".into()),
                ("user-agent".into(), "grpc-go/1.51".into()),
            ]
        );
        assert_eq!(
            request_timeout(&headers).unwrap(),
            Some(Duration::from_secs(1))
        );
        headers.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(
            request_timeout(&headers).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn oversized_requests_are_resource_exhausted() {
        let st = request_error(Status::out_of_range(
            "Error, decoded message length too large: found 17000000 bytes, the limit is: 16777216 bytes",
        ));
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert_eq!(
            st.message(),
            "grpc: received message larger than max (17000000 vs. 16777216)"
        );
        let st = request_error(Status::cancelled("gone"));
        assert_eq!(st.code(), Code::Cancelled);
    }
}
