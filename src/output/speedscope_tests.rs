//! Unit tests of speedscope.rs.
use super::*;
use crate::profile::{Stack, ThreadInfo};

fn frame(function: &str, line: i32, opcode: Option<&str>) -> Frame {
    Frame {
        function: function.into(),
        file: "/app/x.py".into(),
        first_line: 1,
        line,
        offset: opcode.map(|_| 4),
        opcode: opcode.map(String::from),
        base_opcode: opcode.map(String::from),
        object: None,
    }
}

#[test]
fn merges_frames_made_equal_by_options() {
    let data = ProfileData {
        frames: vec![frame("f", 2, None), frame("f", 3, None)],
        threads: vec![ThreadInfo {
            thread_id: 1,
            native_id: Some(7),
            name: None,
            ns_id: None,
            process: None,
        }],
        stacks: vec![
            Stack {
                frames: vec![0],
                thread: 0,
                count: 2,
                truncated: false,
                native: None,
            },
            Stack {
                frames: vec![1],
                thread: 0,
                count: 3,
                truncated: true,
                native: None,
            },
        ],
        ..Default::default()
    };
    let opts = RenderOptions {
        function: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    write(&data, &opts, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["shared"]["frames"].as_array().unwrap().len(), 2);
    assert_eq!(v["profiles"][0]["endValue"], 5);
    assert_eq!(v["profiles"][0]["name"], "thread tid 7");
    assert_eq!(v["shared"]["frames"][1]["name"], "[truncated]");
}
