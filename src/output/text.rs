//! Plain-text layout for reports that fit any width without cutting anything: a row is
//! a prefix of fixed cells (numbers) followed by text items; items that do not fit on
//! the line move to a continuation line, indented, and only an item longer than a whole
//! line is broken (never cut). With no width (a file) every row is one line.

/// Width of `s` in terminal columns (the reports use ASCII and single-width symbols).
pub fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// Lay out one row: `prefix`, then `items` separated by two spaces, each item padded to
/// its `pads` entry when another item follows it on the same line.
pub fn row(width: Option<usize>, prefix: &str, items: &[String], pads: &[usize]) -> Vec<String> {
    let indent = match width {
        Some(w) if width_of(prefix) > w / 2 => 4,
        _ => width_of(prefix),
    };
    let mut lines = Vec::new();
    let mut line = prefix.to_string();
    let mut fresh = true; // nothing after the prefix / indent yet
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        let pad = pads.get(i).copied().unwrap_or(0);
        let piece = if last || width_of(item) >= pad {
            item.clone()
        } else {
            format!("{item:<pad$}")
        };
        let sep = if fresh { "" } else { "  " };
        let fits = match width {
            None => true,
            Some(w) => width_of(&line) + width_of(sep) + width_of(item) <= w,
        };
        if fits {
            line.push_str(sep);
            line.push_str(&piece);
            fresh = false;
            continue;
        }
        let w = width.unwrap_or(usize::MAX);
        if !fresh {
            lines.push(line.trim_end().to_string());
            line = " ".repeat(indent);
        }
        // An item longer than the room left on a fresh line: wrap it at its spaces (a
        // list), else break it.
        let room = w.saturating_sub(width_of(&line)).max(8);
        if width_of(item) > room && item.contains(' ') {
            let start = line.clone();
            let mut wrapped = paragraph(Some(w), &start, indent, item);
            let tail = wrapped.pop().unwrap_or_default();
            lines.extend(wrapped);
            line = tail;
            fresh = false;
            continue;
        }
        let chars: Vec<char> = item.chars().collect();
        let mut chunks = chars.chunks(room).peekable();
        while let Some(chunk) = chunks.next() {
            line.push_str(&chunk.iter().collect::<String>());
            if chunks.peek().is_some() {
                lines.push(line.trim_end().to_string());
                line = " ".repeat(indent);
            }
        }
        if !last && width_of(&piece) > width_of(item) {
            line.push_str(&" ".repeat(width_of(&piece) - width_of(item)));
        }
        fresh = false;
    }
    lines.push(line.trim_end().to_string());
    lines
}

/// Word-wrap `text` to `width` (None: one line), the first line starting with `first`,
/// the others indented by `indent` spaces. Words longer than a line are broken.
pub fn paragraph(width: Option<usize>, first: &str, indent: usize, text: &str) -> Vec<String> {
    let Some(w) = width else {
        return vec![format!("{first}{text}")];
    };
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut fresh = true;
    for word in text.split_whitespace() {
        let sep = if fresh { "" } else { " " };
        if width_of(&line) + width_of(sep) + width_of(word) <= w {
            line.push_str(sep);
            line.push_str(word);
            fresh = false;
            continue;
        }
        if !fresh {
            lines.push(line);
            line = " ".repeat(indent);
        }
        let room = w.saturating_sub(indent).max(8);
        let chars: Vec<char> = word.chars().collect();
        let mut chunks = chars.chunks(room).peekable();
        while let Some(chunk) = chunks.next() {
            line.push_str(&chunk.iter().collect::<String>());
            if chunks.peek().is_some() {
                lines.push(line);
                line = " ".repeat(indent);
            }
        }
        fresh = false;
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_wrap_items_instead_of_cutting_them() {
        let items = vec![
            "CALL_METHOD_DESCRIPTOR_FAST_WITH_KEYWORDS".to_string(),
            "specialized, calls C".to_string(),
        ];
        let one = row(None, "   12  1.2%  ", &items, &[30, 0]);
        assert_eq!(one.len(), 1);
        let narrow = row(Some(60), "   12  1.2%  ", &items, &[30, 0]);
        assert!(narrow.iter().all(|l| width_of(l) <= 60), "{narrow:?}");
        let text = narrow.join("\n");
        assert!(
            text.contains("CALL_METHOD_DESCRIPTOR_FAST_WITH_KEYWORDS"),
            "{text}"
        );
        assert!(text.contains("specialized, calls C"), "{text}");
        let tiny = row(Some(30), "  1  ", &items, &[0, 0]);
        assert!(tiny.iter().all(|l| width_of(l) <= 30), "{tiny:?}");
        let joined: String = tiny.iter().map(|l| l.trim()).collect();
        assert!(joined.contains("CALL_METHOD_DESCRIPTOR_FAST_WITH_KEYWORDS"));
    }

    #[test]
    fn paragraphs_wrap_at_words() {
        let p = paragraph(Some(20), "why: ", 5, "one two three four five six seven");
        assert!(p.iter().all(|l| width_of(l) <= 20), "{p:?}");
        assert_eq!(p[0], "why: one two three");
        assert!(p[1].starts_with("     four"));
    }
}
