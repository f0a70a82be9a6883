//! A large component for deploy tests and benchmarks: built without
//! optimisation (see the workspace's `profile.release.package.heavy`), so its
//! code is big and compiling it takes the host seconds rather than
//! milliseconds. Answers `200 text/plain` `heavy`; `POST ?kind=N` with a JSON
//! body of record kind N (0–11) answers it normalised.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use stratus_sdk::{Request, Response};

/// Declares record kinds with many fields of many types: each derives its
/// own serialiser and deserialiser, which is the bulk of the code.
macro_rules! records {
    ($($name:ident),*) => {
        $(
            #[derive(Debug, Serialize, Deserialize)]
            struct $name {
                id: u64,
                name: String,
                tags: Vec<String>,
                score: f64,
                active: bool,
                parent: Option<u32>,
                attributes: BTreeMap<String, String>,
                counters: HashMap<String, i64>,
                points: Vec<(i32, i32)>,
                note: Option<String>,
                weights: Vec<f32>,
                children: Vec<BTreeMap<String, u16>>,
            }
        )*

        fn normalise(kind: u32, body: &[u8]) -> Result<String, String> {
            let mut kinds = 0..;
            $(
                if kinds.next() == Some(kind) {
                    let record: $name = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                    return serde_json::to_string_pretty(&record).map_err(|e| e.to_string());
                }
            )*
            Err(format!("no record kind {kind}"))
        }
    };
}

records!(
    Alpha, Bravo, Charlie, Delta, Echo, Foxtrot, Golf, Hotel, India, Juliet, Kilo, Lima
);

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    let Some(kind) = req.query_param("kind").and_then(|k| k.parse().ok()) else {
        return Response::text("heavy");
    };
    match normalise(kind, req.body()) {
        Ok(text) => Response::text(text).with_header("content-type", "application/json"),
        Err(err) => Response::text(err).with_status(400),
    }
}
