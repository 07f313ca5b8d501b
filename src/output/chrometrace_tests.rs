//! Unit tests of chrometrace.rs.
use super::*;
use crate::profile::{Frame, Stack, ThreadInfo};

#[test]
fn children_nest_inside_parents() {
    let f = |name: &str| Frame {
        function: name.into(),
        file: "x.py".into(),
        first_line: 1,
        line: 2,
        offset: None,
        opcode: None,
        base_opcode: None,
        object: None,
    };
    let mut data = ProfileData {
        frames: vec![f("a"), f("b"), f("c")],
        threads: vec![ThreadInfo {
            thread_id: 1,
            native_id: None,
            name: None,
            ns_id: None,
            process: None,
        }],
        stacks: vec![
            Stack {
                frames: vec![0, 1],
                thread: 0,
                count: 3,
                truncated: false,
                native: None,
            },
            Stack {
                frames: vec![0, 2],
                thread: 0,
                count: 1,
                truncated: false,
                native: None,
            },
            Stack {
                frames: vec![0],
                thread: 0,
                count: 1,
                truncated: false,
                native: None,
            },
        ],
        ..Default::default()
    };
    data.meta.rate_hz = 1000.0;
    let mut out = Vec::new();
    write(&data, &RenderOptions::default(), &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let xs: Vec<_> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            (
                e["args"]["function"].as_str().unwrap().to_string(),
                e["ts"].as_u64().unwrap(),
                e["dur"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        xs,
        vec![
            ("a".into(), 0, 5000),
            ("b".into(), 0, 3000),
            ("c".into(), 3000, 1000),
        ]
    );
}
