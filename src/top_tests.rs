//! Unit tests of top.rs.
use super::*;
use crate::profile::{Frame, ThreadInfo};
use ratatui::backend::TestBackend;

fn frame(function: &str, first_line: i32, line: i32) -> Frame {
    Frame {
        function: function.into(),
        file: "/srv/app/work.py".into(),
        first_line,
        line,
        offset: None,
        opcode: None,
        base_opcode: None,
        object: None,
    }
}

/// A thread (built from its file form, so fields added later take their defaults).
fn thread_info() -> ThreadInfo {
    serde_json::from_str(r#"{"thread_id": 1, "native_id": 1}"#).unwrap()
}

fn op_frame(function: &str, line: i32, offset: u32, op: &str, base: &str) -> Frame {
    Frame {
        offset: Some(offset),
        opcode: Some(op.into()),
        base_opcode: Some(base.into()),
        object: None,
        ..frame(function, 10, line)
    }
}

/// main → hot_a (80 samples), main → hot_b (20), main → rec → rec (10, recursive).
fn window() -> ProfileData {
    let mut p = Profile::new(Meta::default());
    let t = p.intern_thread(&thread_info());
    let main = p.intern_frame(&frame("main", 1, 5));
    let a1 = p.intern_frame(&frame("hot_a", 10, 11));
    let a2 = p.intern_frame(&frame("hot_a", 10, 12));
    let b = p.intern_frame(&frame("hot_b", 20, 21));
    let r1 = p.intern_frame(&frame("rec", 30, 31));
    let r2 = p.intern_frame(&frame("rec", 30, 32));
    for _ in 0..50 {
        p.add(t, &[main, a1], false, None);
    }
    for _ in 0..30 {
        p.add(t, &[main, a2], false, None);
    }
    for _ in 0..20 {
        p.add(t, &[main, b], false, None);
    }
    for _ in 0..10 {
        p.add(t, &[main, r1, r2], false, None);
    }
    p.add_error("memory read failed".into());
    p.to_data()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn tally<'a>(s: &'a Stats, function: &str) -> &'a Tally {
    s.functions
        .iter()
        .find(|(k, _)| k.1 == function)
        .map(|(_, t)| t)
        .unwrap()
}

#[test]
fn fold_counts_own_total_and_recursion_once() {
    let mut s = Stats::default();
    s.fold(&window(), 110, 2, 1.0);
    assert_eq!(s.samples, 110);
    assert_eq!(s.window_samples, 110);
    let a = tally(&s, "hot_a");
    assert_eq!(
        (a.now_own, a.now_total, a.all_own, a.all_total),
        (80, 80, 80, 80)
    );
    let m = tally(&s, "main");
    assert_eq!((m.now_own, m.now_total), (0, 110));
    let r = tally(&s, "rec");
    assert_eq!((r.now_own, r.now_total), (10, 10), "recursion counted once");
    assert_eq!(s.error_count(), 1);
    assert_eq!(s.late, 2);
    assert_eq!(s.threads, 1);
    assert!((s.achieved_hz - 110.0).abs() < 1e-9);

    // A second window: "now" is replaced, "all" accumulates; absent functions drop to 0.
    let mut p = Profile::new(Meta::default());
    let t = p.intern_thread(&thread_info());
    let main = p.intern_frame(&frame("main", 1, 5));
    let b = p.intern_frame(&frame("hot_b", 20, 22));
    for _ in 0..5 {
        p.add(t, &[main, b], false, None);
    }
    s.fold(&p.to_data(), 5, 0, 1.0);
    let a = tally(&s, "hot_a");
    assert_eq!((a.now_own, a.all_own), (0, 80));
    let b = tally(&s, "hot_b");
    assert_eq!((b.now_own, b.all_own, b.all_total), (5, 25, 25));
    assert_eq!(s.samples, 115);
    assert_eq!(s.window_samples, 5);
}

#[test]
fn rows_sort_by_each_column() {
    let mut s = Stats::default();
    s.fold(&window(), 110, 0, 1.0);
    let names = |sort| -> Vec<String> {
        s.function_rows(sort)
            .iter()
            .map(|(k, _)| k.1.clone())
            .collect()
    };
    assert_eq!(names(SortBy::Own), ["hot_a", "hot_b", "rec", "main"]);
    assert_eq!(names(SortBy::Total), ["main", "hot_a", "hot_b", "rec"]);
    assert_eq!(names(SortBy::OwnTime), ["hot_a", "hot_b", "rec", "main"]);
    assert_eq!(names(SortBy::TotalTime), ["main", "hot_a", "hot_b", "rec"]);
}

#[test]
fn opcodes_and_hotspots() {
    let mut p = Profile::new(Meta::default());
    let t = p.intern_thread(&thread_info());
    let main = p.intern_frame(&frame("main", 1, 5));
    let add = p.intern_frame(&op_frame("hot_a", 12, 24, "BINARY_OP_ADD_INT", "BINARY_OP"));
    let it = p.intern_frame(&op_frame("hot_a", 11, 16, "FOR_ITER_RANGE", "FOR_ITER"));
    for _ in 0..7 {
        p.add(t, &[main, add], false, None);
    }
    for _ in 0..3 {
        p.add(t, &[main, it], false, None);
    }
    let mut s = Stats::default();
    s.fold(&p.to_data(), 10, 0, 1.0);
    let ops = s.opcode_rows(SortBy::Own);
    assert_eq!(ops[0].0 .0, "BINARY_OP_ADD_INT");
    assert_eq!(ops[0].1.now_own, 7);
    let spots = s.spot_rows(SortBy::OwnTime);
    assert_eq!(
        spots[0].0,
        &(
            "/srv/app/work.py".to_string(),
            "hot_a".to_string(),
            12,
            24,
            "BINARY_OP_ADD_INT".to_string()
        )
    );
    // Functions merge all lines and opcodes of hot_a.
    assert_eq!(tally(&s, "hot_a").now_own, 10);
}

fn opts(opcodes: bool) -> TopOptions {
    TopOptions {
        rate_hz: 100.0,
        sampler: crate::sampler::SamplerKind::Ptrace,
        opcodes,
        target_label: "pid 4242 (python work.py)".into(),
    }
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.draw(f, Instant::now())).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn row_of(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not on screen:\n{}", lines.join("\n")))
}

#[test]
fn draws_header_table_and_sort_marker() {
    let mut app = App::new(&opts(false), "3.12.1".into(), "/srv/app".into());
    let first = screen(&app, 100, 20);
    assert!(
        first[0].contains("pid 4242 (python work.py)"),
        "{}",
        first[0]
    );
    assert!(first[0].contains("Python 3.12.1"));
    assert!(first[2].contains("Collecting samples"));
    app.stats.fold(&window(), 110, 0, 1.0);
    let lines = screen(&app, 100, 20);
    let text = lines.join("\n");
    assert!(lines[1].contains("Samples: 110"), "{text}");
    assert!(lines[1].contains("Errors: 1"), "{text}");
    assert!(text.contains("%Own▼"), "{text}");
    assert!(text.contains("hot_a (work.py:10)"), "{text}");
    assert!(text.contains("72.73%"), "{text}"); // 80 / 110
    assert!(text.contains("0.80s"), "{text}"); // 80 samples at 100 Hz
    assert!(row_of(&lines, "hot_a") < row_of(&lines, "hot_b"));
    assert!(row_of(&lines, "hot_b") < row_of(&lines, "main ("));

    assert_eq!(app.on_key(key('2')), Action::Redraw);
    let lines = screen(&app, 100, 20);
    let text = lines.join("\n");
    assert!(
        text.contains("%Total▼") && !text.contains("%Own▼"),
        "{text}"
    );
    assert!(row_of(&lines, "main (") < row_of(&lines, "hot_a"));

    app.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
    assert_eq!(app.sort, SortBy::OwnTime);
    app.on_key(key('s'));
    assert_eq!(app.sort, SortBy::TotalTime);
    app.on_key(key('s'));
    assert_eq!(app.sort, SortBy::Own);
    app.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::NONE));
    assert_eq!(app.sort, SortBy::TotalTime);

    // Without --opcodes, `o` explains itself.
    app.on_key(key('o'));
    assert_eq!(app.view, View::Functions);
    assert!(screen(&app, 100, 20)[2].contains("--opcodes"));
}

#[test]
fn keys_quit_reset_pause() {
    let mut app = App::new(&opts(true), "3.12.1".into(), String::new());
    assert_eq!(app.on_key(key('q')), Action::Quit);
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
    assert_eq!(app.on_key(key('c')), Action::Redraw);
    assert_eq!(app.on_key(key('r')), Action::Reset);
    assert_eq!(app.on_key(key('p')), Action::TogglePause);
    app.paused = true;
    assert!(screen(&app, 80, 10)[2].contains("PAUSED"));
    app.paused = false;
    app.stats.windows = 1;
    app.stats.window_dropped = 100;
    assert!(screen(&app, 80, 10)[2].contains("idle threads are left out"));
    app.exited = Some(Instant::now());
    assert_eq!(app.on_key(key('p')), Action::Redraw);
    assert!(screen(&app, 80, 10)[2].contains("exited"));
}

#[test]
fn opcode_view_shows_opcodes_and_hotspots() {
    let mut app = App::new(&opts(true), "3.12.1".into(), "/srv/app".into());
    let mut p = Profile::new(Meta::default());
    let t = p.intern_thread(&thread_info());
    let add = p.intern_frame(&op_frame("hot_a", 12, 24, "BINARY_OP_ADD_INT", "BINARY_OP"));
    for _ in 0..4 {
        p.add(t, &[add], false, None);
    }
    app.stats.fold(&p.to_data(), 4, 0, 1.0);
    app.on_key(key('o'));
    assert_eq!(app.view, View::Opcodes);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert!(text.contains("BINARY_OP_ADD_INT"), "{text}");
    assert!(text.contains("hot_a (work.py:12)"), "{text}");
    assert!(text.contains("100.00%"), "{text}");
    assert!(text.contains("o functions"), "{text}");
    app.on_key(key('3'));
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("OwnTime▼"), "{text}");
}

#[test]
fn opcode_view_shows_the_share_of_native_code_an_instruction_called() {
    let mut app = App::new(&opts(true), "3.12.1".into(), "/srv/app".into());
    let mut p = Profile::new(Meta {
        ip_seen: 10,
        ..Meta::default()
    });
    let t = p.intern_thread(&thread_info());
    let mm = p.intern_frame(&op_frame("matmul", 13, 6, "BINARY_OP", "BINARY_OP"));
    let add = p.intern_frame(&op_frame("hot_a", 12, 24, "BINARY_OP_ADD_INT", "BINARY_OP"));
    let blas = p.intern_frame(&Frame::native("libopenblas.so.0"));
    for _ in 0..3 {
        p.add(t, &[mm], false, Some(blas));
    }
    p.add(t, &[mm], false, None);
    for _ in 0..6 {
        p.add(t, &[add], false, None);
    }
    app.stats.fold(&p.to_data(), 10, 0, 1.0);
    let ops = app.stats.opcode_rows(SortBy::Own);
    let bin = ops.iter().find(|r| r.0 .0 == "BINARY_OP").unwrap();
    assert_eq!((bin.1.now_own, bin.1.now_native), (4, 3));
    app.on_key(key('o'));
    let lines = screen(&app, 100, 24);
    let text = lines.join("\n");
    assert!(text.contains("Native"), "{text}");
    let row = &lines[row_of(&lines, "matmul (work.py:13)")];
    assert!(row.contains("75%"), "{row}");
    let row = &lines[row_of(&lines, "hot_a (work.py:12)")];
    assert!(!row.contains('%') || row.matches('%').count() == 1, "{row}");
}

#[test]
fn long_target_labels_keep_pid_script_and_python_version() {
    let mut o = opts(false);
    o.target_label =
        "pid 617 (/root/.pyenv/versions/3.12.1/bin/python /tmp/.tmpzZ2VMJ/top_target.py)".into();
    let app = App::new(&o, "3.12.1".into(), String::new());
    let head = &screen(&app, 80, 10)[0];
    assert!(head.starts_with("pyprof top · pid 617 ("), "{head}");
    assert!(
        head.contains("…") && head.contains("top_target.py)"),
        "{head}"
    );
    assert!(head.contains("· Python 3.12.1 · ptrace · 100 Hz"), "{head}");
    assert_eq!(fit_middle("abcdefghij", 7), "ab…ghij");
    assert_eq!(fit_middle("abc", 7), "abc");
}

#[test]
fn long_file_names_keep_function_and_line() {
    let app = App::new(&opts(false), "3.12.1".into(), String::new());
    let s = app.place("hot_a", "/very/long/path/to/some/module/file.py", 123, 30);
    assert_eq!(s.chars().count(), 30, "{s}");
    assert!(
        s.starts_with("hot_a (…") && s.ends_with("file.py:123)"),
        "{s}"
    );
    assert_eq!(app.place("f", "/a.py", 1, 80), "f (/a.py:1)");
}

#[test]
fn sixty_columns_keep_function_names_and_show_a_base_once() {
    let mut app = App::new(&opts(true), "3.12.1".into(), "/srv/app".into());
    let mut p = Profile::new(Meta::default());
    let t = p.intern_thread(&thread_info());
    let in_sim = |f: Frame| Frame {
        file: "/srv/app/simulation.py".into(),
        ..f
    };
    let attr = p.intern_frame(&in_sim(op_frame(
        "simulate_particles",
        41,
        20,
        "LOAD_ATTR_INSTANCE_VALUE",
        "LOAD_ATTR",
    )));
    let store = p.intern_frame(&in_sim(op_frame(
        "simulate_particles",
        42,
        30,
        "STORE_FAST",
        "STORE_FAST",
    )));
    for _ in 0..6 {
        p.add(t, &[attr], false, None);
    }
    for _ in 0..4 {
        p.add(t, &[store], false, None);
    }
    app.stats.fold(&p.to_data(), 10, 0, 1.0);
    let lines = screen(&app, 60, 20);
    let text = lines.join("\n");
    assert!(text.contains("simulate_particles"), "{text}");
    app.on_key(key('o'));
    let lines = screen(&app, 60, 24);
    let text = lines.join("\n");
    // The hotspots keep the function's name whole.
    let spots = lines
        .iter()
        .filter(|l| l.contains("simulate_particles"))
        .count();
    assert!(spots >= 2, "function names cut in the hotspots:\n{text}");
    // The opcode row of an instruction that is its own base names it once.
    let ops_row = &lines[row_of(&lines, "STORE_FAST")];
    assert_eq!(ops_row.matches("STORE_FAST").count(), 1, "{text}");
    let attr_row = &lines[row_of(&lines, "LOAD_ATTR_INSTANCE_VALUE")];
    assert!(
        attr_row.contains("LOAD_ATTR "),
        "base of a specialized form: {text}"
    );
}
